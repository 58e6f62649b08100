"""Packing: several short examples side by side in one row, so that a step computes few padding
tokens. Pretraining packs sentence pairs (``bert_jax.data.pretraining.pack_pairs``); fine-tuning
packs each training batch of examples (:func:`pack`).

A packed row carries ``segment_ids`` (example 1, 2, ... of the row; 0 = padding), so attention
stays inside each example, ``position_ids`` that restart in every example, and one
``cls_positions`` entry per example slot of the row (where its [CLS] is), so the model computes
for every example what it computes for it alone in a padded row (``tests/test_packing.py``).

Why fine-tuning packs the batch and not the data set: the batch is still the ``batch_size``
examples of the padded run's shuffle (the same examples per step, the same loss normaliser);
packing only changes how many rows of ``max_seq_length`` they take. Rotten Tomatoes snippets
(median 27 tokens) at 128: 32 examples fill about 7 rows, not 32.

Usage::

    rows = best_fit([6, 3, 5, 2], row_length=8, max_per_row=2)    # [[0, 3], [2, 1]]
    packed, slots = pack(batch, row_length=128, max_per_row=16, row_multiple=1)
    packed["input_ids"].shape      # [rows, 128]
    packed["labels"].shape         # [rows, 16]: one per example slot; slots[r, s] = its example
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bert_jax.data.buckets import row_lengths, train_plan

# What packed rows carry beyond the plain rows' arrays; the models take them as keywords.
PACKED_FIELDS = ("segment_ids", "position_ids", "cls_positions")


def best_fit(lengths: Sequence[int], row_length: int, max_per_row: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows of at most ``row_length`` tokens and
    ``max_per_row`` items.

    Best-fit decreasing: the longest items are placed first, each into the open row whose room
    fits it most tightly (rows are kept in buckets by their room, so this stays fast on the
    hundred thousand pairs of a pretraining buffer). Deterministic given ``lengths``.

    >>> best_fit([6, 3, 5, 2], 8, 2)
    [[0, 3], [2, 1]]
    """
    rows: list[list[int]] = []
    by_room: list[list[int]] = [[] for _ in range(row_length + 1)]  # room -> open rows
    for item in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = int(lengths[item])
        if n > row_length:
            raise ValueError(f"An item of {n} tokens does not fit a row of {row_length}.")
        room = next((r for r in range(n, row_length + 1) if by_room[r]), None)
        if room is None:
            rows.append([item])
            index, room = len(rows) - 1, row_length
        else:
            index = by_room[room].pop()
            rows[index].append(item)
        if len(rows[index]) < max_per_row:
            by_room[room - n].append(index)
    return rows


def pack(
    batch: Mapping[str, np.ndarray], row_length: int, max_per_row: int, row_multiple: int = 1
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A batch of padded rows (one example each, real tokens first) packed into fewer rows.

    Args:
      batch: ``[n, row_length]`` token arrays (``input_ids``, ``token_type_ids``,
        ``attention_mask``, a tagger's ``labels``, ...) and per-example arrays ``[n, ...]``
        (``labels``, ``weights``, ...).
      row_length: the rows' length (the batch's ``max_seq_length``).
      max_per_row: example slots per row.
      row_multiple: the number of rows is rounded up to a multiple of it (the data-parallel
        devices must split the rows evenly); rows added have no examples.

    Returns:
      ``(packed, slots)``: token arrays ``[rows, row_length]`` laid side by side, with
      ``segment_ids``, ``position_ids`` and ``attention_mask`` (``segment_ids > 0``); per-example
      arrays ``[rows, max_per_row, ...]`` by slot, zero in empty slots (so a ``weights`` array
      weighs them 0); ``cls_positions`` ``[rows, max_per_row]``; and ``slots`` ``[rows,
      max_per_row]``, the batch index of each slot's example (-1: empty).

    >>> ids = np.array([[2, 7, 3, 0, 0, 0], [2, 3, 0, 0, 0, 0], [2, 5, 6, 3, 0, 0]])
    >>> batch = {"input_ids": ids, "attention_mask": (ids > 0) * 1, "labels": np.array([1, 0, 1])}
    >>> packed, slots = pack(batch, row_length=6, max_per_row=2)
    >>> packed["input_ids"].tolist(), packed["segment_ids"].tolist()
    ([[2, 3, 2, 5, 6, 3], [2, 7, 3, 0, 0, 0]], [[1, 1, 2, 2, 2, 2], [1, 1, 1, 0, 0, 0]])
    >>> slots.tolist(), packed["labels"].tolist(), packed["cls_positions"].tolist()
    ([[1, 2], [0, -1]], [[0, 1], [1, 0]], [[0, 2], [0, 0]])
    """
    lengths = row_lengths(batch)
    rows = best_fit(lengths, row_length, max_per_row)
    num_rows = _rounded_up(len(rows), row_multiple)
    slots = np.full((num_rows, max_per_row), -1, np.int64)
    for r, examples in enumerate(rows):
        slots[r, : len(examples)] = sorted(examples)  # batch order within a row
    token_keys = [k for k, v in batch.items() if v.ndim == 2 and v.shape[1] == row_length]
    packed = {k: np.zeros((num_rows, row_length), batch[k].dtype) for k in token_keys}
    segments = np.zeros((num_rows, row_length), np.int32)
    positions = np.zeros((num_rows, row_length), np.int32)
    starts = np.zeros((num_rows, max_per_row), np.int32)
    for r, s in zip(*np.nonzero(slots >= 0), strict=True):
        i, start = slots[r, s], segments[r].astype(bool).sum()
        end = start + lengths[i]
        for k in token_keys:
            packed[k][r, start:end] = batch[k][i, : lengths[i]]
        segments[r, start:end] = s + 1
        positions[r, start:end] = np.arange(lengths[i])
        starts[r, s] = start
    real = slots >= 0
    for k, v in batch.items():
        if k not in token_keys:
            by_slot = np.asarray(v)[np.where(real, slots, 0)]
            packed[k] = np.where(real.reshape(*real.shape, *[1] * (v.ndim - 1)), by_slot, 0)
            packed[k] = packed[k].astype(v.dtype)
    packed.update(segment_ids=segments, position_ids=positions, cls_positions=starts)
    packed["attention_mask"] = (segments > 0).astype(batch["attention_mask"].dtype)
    return packed, slots


def _rounded_up(rows: int, multiple: int) -> int:
    return -(-max(rows, 1) // multiple) * multiple


def token_ratio(
    lengths: np.ndarray,
    buckets: Sequence[int],
    batch_size: int,
    max_per_row: int,
    row_multiple: int = 1,
    seed: int = 0,
    batches: int = 256,
) -> float:
    """Tokens the packed rows of a training epoch compute over those its length-bucketed rows
    compute (``buckets``, ending at ``max_seq_length``), counted over its first ``batches``
    batches: below 1, packing computes less. Packing pays where examples are short for
    ``max_seq_length``: 512 Rotten Tomatoes snippets at 128 give 0.84; rows that fill most of
    it give about 1 or more (and more compiled shapes), and stay bucketed.

    >>> token_ratio(np.full(64, 40), (64, 128), batch_size=32, max_per_row=16)  # 11 rows, not 32
    0.6875
    >>> token_ratio(np.full(64, 30), (32, 64, 128), batch_size=32, max_per_row=16)
    1.0
    """
    row_length = buckets[-1]
    packed = sum(
        _rounded_up(len(best_fit(lengths[rows], row_length, max_per_row)), row_multiple)
        for rows, _ in train_plan(lengths, (row_length,), batch_size, seed, 0)[:batches]
    )
    bucketed = sum(
        len(rows) * length
        for rows, length in train_plan(lengths, buckets, batch_size, seed, 0)[:batches]
    )
    return packed * row_length / bucketed
