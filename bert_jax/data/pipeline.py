"""grain input pipeline: prepared sentence pairs -> masked, padded, per-process numpy batches.

Reads `DATA_DIR/seq{L}/{split}-*.array_record` written by `python -m bert_jax.prepare`, and the
tokenizer in `DATA_DIR/tokenizer`. The pipeline is a chain of grain `MapDataset`s, so every
element is a pure function of its position and nothing depends on timing:

  record keys -> shuffle(seed) -> repeat(num_epochs)    the global stream; a new order each epoch
  global batch t = stream positions [t*B, (t+1)*B)      the same for any number of processes
  process p reads rows [p*b, (p+1)*b) of each           b = B / process_count: only its own rows,
                                                        in one batched read
  -> mask + pad + stack       masks drawn from an rng seeded by (seed, epoch, record key), so
                              they change every epoch (dynamic) yet are reproduced exactly after
                              a restart; static masking seeds by (seed, record key) only

The iterator's `get_state()` / `set_state()` (a few integers) go into every checkpoint (see
`bert_jax.checkpoints`).

With num_epochs=None (training) the stream never ends. With a finite num_epochs (evaluation:
shuffle=False, num_epochs=1) the last global batch is completed with padding examples with no
tokens (attention_mask all 0, so their NSP weight attention_mask[:, 0] is 0) and masked_weights 0,
so every record is counted exactly once, on any number of processes.

Usage:
    >>> loader = make_pretraining_loader("/data/bert", "train", seq_len=128,
    ...                                  global_batch_size=256, seed=0)  # doctest: +SKIP
    >>> batch = next(loader)  # dict of numpy arrays, 256 // jax.process_count() rows
    >>> batch = bert_jax.train.global_batch(batch, mesh)  # dict of global jax.Arrays
"""

import glob
import math
import os
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from bert_jax import faults
from bert_jax.data import pretraining
from bert_jax.tokenizers import load_tokenizer


def record_paths(data_dir: str, split: str, seq_len: int) -> list[str]:
    """The array_record files of a prepared split, in shard order."""
    pattern = os.path.join(data_dir, f"seq{seq_len}", f"{split}-*-of-*.array_record")
    paths = sorted(glob.glob(pattern))
    if not paths:
        available = sorted(os.path.basename(p) for p in glob.glob(os.path.join(data_dir, "seq*")))
        raise FileNotFoundError(
            f"No files match {pattern} (prepared lengths: {available or 'none'}). Prepare them "
            f"with `python -m bert_jax.prepare --output={data_dir} --max_seq_length={seq_len} ...`."
        )
    return paths


class _MakeBatch:
    """Batch index t -> this process's rows of global batch t, masked, padded and stacked.

    Global batch t is stream positions [t*B, (t+1)*B) whatever the number of processes; process
    p makes rows [p*b, (p+1)*b) of it (b = B / processes). So every process count trains on the
    same batches, and each process reads only its own rows, in one batched read (a record read
    alone costs about 8 times as much). A class, not a closure, so that grain can pickle it into
    worker processes.
    """

    def __init__(
        self,
        source: grain.sources.ArrayRecordDataSource,
        paths: list[str],
        stream: grain.MapDataset,
        global_batch_size: int,
        process_index: int,
        process_count: int,
        seq_len: int,
        max_pairs: int,
        seed: int,
        dynamic: bool,
        masking: dict[str, Any],
    ):
        self._source = source
        self._paths = paths  # the source's files, in order
        self._stream = stream
        self._global = global_batch_size
        self._local = global_batch_size // process_count
        self._offset = process_index * self._local
        self._seq_len = seq_len
        self._max_pairs = max_pairs
        self._seed = seed
        self._dynamic = dynamic
        self._masking = masking

    def __call__(self, t: int) -> dict[str, np.ndarray]:
        first = t * self._global + self._offset
        # Positions past the end of a finite stream are padding rows that fill the last batch.
        positions = range(first, min(first + self._local, len(self._stream)))
        keys = [self._stream[position] for position in positions]
        try:
            records = self._source.__getitems__(keys) if keys else []
        except Exception as e:  # name the damaged file: Riegeli's message names none
            raise faults.damaged_shard(self._paths, keys, e) from e
        epochs = [position // len(self._source) for position in positions]
        rows = [self._masked_row(*row) for row in zip(keys, epochs, records, strict=True)]
        padding = self._local - len(rows)
        rows += [self._assemble([]) for _ in range(padding)]
        return {key: np.stack([row[key] for row in rows]) for key in rows[0]}

    def _masked_row(self, key: int, epoch: int, record: bytes) -> dict[str, np.ndarray]:
        # The pairs of a packed row share its masked-LM slots: a pair is masked only as far as
        # slots remain, so no token is corrupted without being predicted.
        budget = self._masking["max_predictions"]
        pairs = []
        for i, pair in enumerate(pretraining.parse_row(record)):
            # Seeded by the record key, not the stream position: the mask does not depend on the
            # shuffle or on the number of processes.
            entropy = [self._seed, epoch, key, i] if self._dynamic else [self._seed, key, i]
            if budget > 0:
                masked, positions, ids, weights = pretraining.mask_tokens(
                    pair["input_ids"],
                    np.random.default_rng(entropy),
                    **{**self._masking, "max_predictions": budget},
                )
                budget -= int(weights.sum())
            else:
                masked, positions, ids, weights = pair["input_ids"], [], [], []
            pairs.append(
                {
                    **pair,
                    "input_ids": masked,
                    "masked_positions": positions,
                    "masked_ids": ids,
                    "masked_weights": weights,
                }
            )
        return self._assemble(pairs)

    def _assemble(self, pairs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        return pretraining.assemble_row(
            pairs, self._seq_len, self._masking["max_predictions"], self._max_pairs
        )


def make_pretraining_loader(
    data_dir: str,
    split: str,
    seq_len: int,
    global_batch_size: int,
    *,
    seed: int,
    masked_lm_prob: float = 0.15,
    max_predictions: int = 20,
    mask_token_ratio: float = 0.8,
    random_token_ratio: float = 0.1,
    whole_word: bool = False,
    max_pairs_per_row: int = 1,
    dynamic: bool = True,
    shuffle: bool = True,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    worker_count: int = 0,
    read_threads: int = 1,
    tokenizer: Any = None,
) -> grain.DatasetIterator:
    """Iterator over this process's batches of masked pretraining examples (see module doc).

    Args:
      data_dir: a directory written by `bert_jax.prepare`.
      split: "train" or "eval".
      seq_len: padded length; reads the pairs prepared for it (DATA_DIR/seq{seq_len}).
      global_batch_size: rows over all processes; each process yields
        global_batch_size // process_count rows.
      seed: shuffle and masking seed (non-negative, < 2**32).
      masked_lm_prob, max_predictions, mask_token_ratio, random_token_ratio, whole_word: masking,
        as `pretraining.mask_tokens`.
      max_pairs_per_row: 1 for plain rows; for data packed by `prepare --max_pairs_per_row=N`,
        N (rows then carry segment_ids, position_ids, cls_positions, nsp_weights).
      dynamic: a new mask every epoch (True) or the same mask every epoch (False).
      shuffle: shuffle every epoch.
      num_epochs: None repeats forever; a number makes a finite stream (every record once per
        epoch, the final batch padded).
      process_index, process_count: which part of the data to read (default: JAX's).
      worker_count: worker processes for reading and masking (0: in this process). Masking is
        Python-bound: this is how the loader scales with CPU cores.
      read_threads: threads per process producing batches ahead; more help only when reads wait
        on storage, since masking holds the GIL (on 2 busy cores, 16 threads were 2x slower).
      tokenizer: for the special-token ids and word starts; default DATA_DIR/tokenizer.

    Returns:
      A grain DatasetIterator (has get_state/set_state) of dicts: input_ids, token_type_ids,
      attention_mask int32[b, seq_len]; masked_positions, masked_ids int32[b, max_predictions];
      masked_weights float32[b, max_predictions]; next_sentence_label int32[b].
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by the {process_count} "
            "processes; use a multiple of the process count."
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
    if tokenizer is None:
        tokenizer = load_tokenizer(os.path.join(data_dir, "tokenizer"))
    paths = record_paths(data_dir, split, seq_len)
    source = grain.sources.ArrayRecordDataSource(paths)
    num_records = len(source)
    if not num_records:
        raise ValueError(f"{split} at seq {seq_len} in {data_dir} holds no examples.")
    masking = {
        "vocab_size": tokenizer.vocab_size,
        "mask_id": tokenizer.mask_id,
        "special_ids": sorted(
            {tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id}
        ),
        "word_start_mask": tokenizer.word_start_mask,
        "masked_lm_prob": masked_lm_prob,
        "max_predictions": max_predictions,
        "mask_token_ratio": mask_token_ratio,
        "random_token_ratio": random_token_ratio,
        "whole_word": whole_word,
    }
    finite = num_epochs is not None
    # The global stream: every record once per epoch, in a fresh order each epoch.
    stream = grain.MapDataset.range(num_records)
    if shuffle:
        stream = stream.shuffle(seed)
    stream = stream.repeat(num_epochs)
    num_batches = len(stream) // global_batch_size
    if finite:  # the last global batch is completed with padding examples
        num_batches = math.ceil(len(stream) / global_batch_size)
    make_batch = _MakeBatch(
        source,
        paths,
        stream,
        global_batch_size,
        process_index,
        process_count,
        seq_len,
        max_pairs_per_row,
        seed,
        dynamic,
        masking,
    )
    # Whole batches are the elements: worker processes take them in turn, so the batches do not
    # depend on worker_count.
    batches = (
        grain.MapDataset.range(num_batches)
        .map(make_batch)
        .to_iter_dataset(grain.ReadOptions(num_threads=read_threads))
    )
    if worker_count:
        # grain's worker processes read absl flags; outside an absl app they are not parsed yet.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(batches)
