"""Length-bucketed batches for fine-tuning and evaluation: less padding, few compiled shapes.

A family's features are padded to ``max_seq_length``; most real sentences are far shorter (SST-2
averages about 25 tokens). Here every row is assigned the smallest of a few fixed lengths (the
buckets) that holds its tokens; a batch is cut to the longest bucket among its rows, so the step
computes little padding and is compiled once per bucket. Cutting padding off changes nothing the
model computes at the real tokens (padding is masked out of attention), so the losses and
predictions are those of the padded rows (``tests/test_buckets.py``).

Training: each epoch shuffles the rows from ``(seed, epoch)``, as the padded loop does, then
draws batches within buckets (rows left over in a bucket join the next longer one; the last
``n % batch_size`` rows of the epoch are dropped, as in the padded loop, so an epoch has the same
``n // batch_size`` steps) and shuffles the order of the batches. Batch ``t`` is a function of
``(seed, t)`` alone, so a resumed run continues exactly, mid-epoch included.

Arrays run along the tokens when their last axis has ``max_seq_length`` entries (``[rows, L]``,
SWAG's ``[rows, choices, L]``); their real tokens come first (``attention_mask`` 1), padding after.

Usage::

    buckets = bucket_lengths(config.length_buckets, max_seq_length=128)   # (16, 32, ..., 128)
    lengths = row_lengths(arrays)
    rows, length = train_plan(lengths, buckets, batch_size=32, seed=0, epoch=0)[t]
    batch = cut({k: v[rows] for k, v in arrays.items()}, length, max_seq_length=128)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# A plan is a list of batches, each the row indices it holds and the length it is cut to.
Plan = list[tuple[np.ndarray, int]]


def bucket_lengths(lengths: Sequence[int], max_seq_length: int) -> tuple[int, ...]:
    """The sorted bucket lengths: ``lengths`` (ending at ``max_seq_length``), or, when empty,
    the multiples of an eighth of ``max_seq_length`` (rounded up to a multiple of 8, at least 16
    tokens) up to ``max_seq_length``. Eighths: counted over the training plans of 512 Rotten
    Tomatoes snippets at 128 (``benchmarks.finetune``'s rows), quarters compute 1.55x the real
    tokens, eighths 1.29x, PyTorch's pad-to-the-longest-row batches 1.93x; each bucket costs one
    compilation per step function.

    >>> bucket_lengths((), 128)
    (16, 32, 48, 64, 80, 96, 112, 128)
    >>> bucket_lengths((), 64)
    (16, 32, 48, 64)
    >>> bucket_lengths((), 0)
    Traceback (most recent call last):
    ...
    ValueError: max_seq_length must be positive, got 0.
    """
    if max_seq_length <= 0:
        raise ValueError(f"max_seq_length must be positive, got {max_seq_length}.")
    if not lengths:
        step = max(16, -(-max_seq_length // 64) * 8)  # an eighth, rounded up to 8
        lengths = [*range(step, max_seq_length, step), max_seq_length]
    out = tuple(sorted({int(x) for x in lengths}))
    if out[0] <= 0 or out[-1] != max_seq_length:
        raise ValueError(
            f"length_buckets {tuple(lengths)} must be positive and end at max_seq_length="
            f"{max_seq_length} (the longest rows need it); e.g. (32, 64, {max_seq_length})."
        )
    return out


def row_lengths(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Tokens per row (the longest choice of a multiple-choice row), from ``attention_mask``."""
    mask = np.asarray(arrays["attention_mask"])
    last = mask.shape[-1]
    flat = mask.reshape(len(mask), -1, last) > 0
    # The index after the last real token: a row's tokens come first, padding after.
    ends = np.where(flat.any(-1), last - np.argmax(flat[..., ::-1], axis=-1), 0)
    return ends.max(-1)


def _bucket_of(lengths: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    index = np.searchsorted(np.asarray(buckets), lengths, side="left")
    if (index >= len(buckets)).any():
        raise ValueError(f"A row has {lengths.max()} tokens, more than the longest bucket.")
    return index


def train_plan(
    lengths: np.ndarray, buckets: Sequence[int], batch_size: int, seed: int, epoch: int
) -> Plan:
    """The ``len(lengths) // batch_size`` batches of one training epoch, in the order they run."""
    n = len(lengths)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    which = _bucket_of(lengths[order], buckets)
    plan: Plan = []
    carry = np.zeros((0,), np.int64)
    for b, length in enumerate(buckets):
        rows = np.concatenate([carry, order[which == b]])
        full = len(rows) // batch_size * batch_size
        plan += [(rows[i : i + batch_size], length) for i in range(0, full, batch_size)]
        carry = rows[full:]  # too few for a batch: they ride with the next longer bucket
    batch_order = np.random.default_rng([seed, epoch, 1]).permutation(len(plan))
    return [plan[i] for i in batch_order]


def eval_plan(lengths: np.ndarray, buckets: Sequence[int], batch_size: int) -> Plan:
    """Every row exactly once: rows sorted by length, cut into batches of ``batch_size`` (the
    last one short), each cut to the bucket of its longest row."""
    order = np.argsort(lengths, kind="stable")
    which = _bucket_of(lengths[order], buckets)
    return [
        (order[i : i + batch_size], int(buckets[which[i : i + batch_size].max()]))
        for i in range(0, len(order), batch_size)
    ]


def cut(batch: Mapping[str, np.ndarray], length: int, max_seq_length: int) -> dict[str, np.ndarray]:
    """The batch with every token axis (a last axis of ``max_seq_length``) cut to ``length``."""
    return {
        k: v[..., :length] if v.ndim >= 2 and v.shape[-1] == max_seq_length else v
        for k, v in batch.items()
    }
