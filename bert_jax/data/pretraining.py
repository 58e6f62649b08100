"""BERT pretraining examples: sentence pairs for NSP, masked-LM masking, fixed-shape padding.

Follows google-research/bert `create_pretraining_data.py`, split in two so masking can be redone
every epoch (dynamic masking) instead of being frozen into the files:

1. `create_instances` (offline, in `bert_jax.prepare`): sentence pairs [CLS] a [SEP] b [SEP],
   stored unpadded with the NSP label, one record per row (`serialize_row`): a pair, or several
   packed together (`pack_pairs`).
2. `mask_tokens` + `assemble_row` (online, in `bert_jax.data.pipeline`): the 80/10/10 masked-LM
   corruption and padding to fixed shapes.

Usage:
    >>> import numpy as np
    >>> from bert_jax.data import pretraining
    >>> doc = [[10, 11, 12], [13, 14], [15, 16, 17]]
    >>> other = [[20, 21], [22, 23, 24]]
    >>> rng = np.random.default_rng(0)
    >>> pairs = pretraining.create_instances(
    ...     doc, [doc, other], 0, max_seq_length=16, short_seq_prob=0.1, rng=rng,
    ...     cls_id=2, sep_id=3)
    >>> int(pairs[0]["input_ids"][0])
    2
"""

import functools
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bert_jax.data import packing

# The first token of a pair is [CLS]; two [SEP]s close the segments.
_NUM_SPECIAL_TOKENS_IN_PAIR = 3


def _truncate_seq_pair(
    tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """The original truncate_seq_pair: trims the longer segment, from the front or the back at
    random (to add noise), until the pair fits."""
    num_steps = len(tokens_a) + len(tokens_b) - max_num_tokens
    if num_steps <= 0:
        return tokens_a, tokens_b
    # One coin per step, drawn at once: a 100k-token line would otherwise cost 100k rng calls.
    from_front = (rng.random(num_steps) < 0.5).tolist()
    a_start, a_end, b_start, b_end = 0, len(tokens_a), 0, len(tokens_b)
    for front in from_front:
        if a_end - a_start > b_end - b_start:
            a_start, a_end = (a_start + 1, a_end) if front else (a_start, a_end - 1)
        else:
            b_start, b_end = (b_start + 1, b_end) if front else (b_start, b_end - 1)
    return tokens_a[a_start:a_end], tokens_b[b_start:b_end]


def create_instances(
    document: Sequence[Sequence[int]],
    all_documents: Sequence[Sequence[Sequence[int]]],
    doc_index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    cls_id: int,
    sep_id: int,
) -> list[dict[str, Any]]:
    """Sentence pairs from one document, a port of the original create_instances_from_document.

    Segments (sentences, lists of token ids) are accumulated until they reach a target length
    (max_seq_length - 3, or with probability `short_seq_prob` a random shorter length, so the model
    also sees short inputs); the chunk is split at a random sentence boundary into a and b. With
    probability 0.5 (always when the chunk is a single sentence), b is replaced by a stretch of a
    random OTHER document of `all_documents` (NSP label 1) and the unused sentences of the chunk
    are put back for the next pair; otherwise b is the actual continuation (label 0 = IsNext).

    Differences from the original, both deliberate: the random document is drawn among the others
    (the original retried 10 times and could still pick the same one), and with a single document
    in `all_documents` a chunk that needs a random next segment yields no pair.

    Args:
      document: the document's sentences, each a non-empty list of token ids (no specials).
      all_documents: the pool random next segments come from; `all_documents[doc_index]` is
        `document`.
      doc_index: position of `document` in `all_documents`.
      max_seq_length: the longest pair, special tokens included.
      short_seq_prob: probability of a shorter random target length.
      rng: numpy random generator (the only source of randomness).
      cls_id, sep_id: ids of [CLS] and [SEP].

    Returns:
      A list of {"input_ids": int32[n], "token_type_ids": int32[n], "next_sentence_label": int},
      unpadded, n <= max_seq_length; token types are 0 up to and including the first [SEP].
    """
    if max_seq_length < _NUM_SPECIAL_TOKENS_IN_PAIR + 2:
        raise ValueError(f"max_seq_length must be >= 5 to hold a pair, got {max_seq_length}.")
    max_num_tokens = max_seq_length - _NUM_SPECIAL_TOKENS_IN_PAIR
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = int(rng.integers(2, max_num_tokens + 1))

    instances = []
    current_chunk: list[Sequence[int]] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            # a_end: how many of the chunk's segments go into segment a.
            a_end = 1 if len(current_chunk) == 1 else int(rng.integers(1, len(current_chunk)))
            tokens_a = [token for seg in current_chunk[:a_end] for token in seg]
            is_random_next = len(current_chunk) == 1 or rng.random() < 0.5
            if is_random_next and len(all_documents) < 2:
                current_chunk, current_length = [], 0
                i += 1
                continue
            if is_random_next:
                target_b_length = target_seq_length - len(tokens_a)
                # Uniform over the other documents: draw from n-1 and skip doc_index.
                random_index = int(rng.integers(0, len(all_documents) - 1))
                random_index += random_index >= doc_index
                random_document = all_documents[random_index]
                tokens_b = []
                for j in range(int(rng.integers(0, len(random_document))), len(random_document)):
                    tokens_b.extend(random_document[j])
                    if len(tokens_b) >= target_b_length:
                        break
                # The segments not used as b are not wasted: the next pair starts with them.
                i -= len(current_chunk) - a_end
            else:
                tokens_b = [token for seg in current_chunk[a_end:] for token in seg]
            tokens_a, tokens_b = _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            input_ids = np.array([cls_id, *tokens_a, sep_id, *tokens_b, sep_id], np.int32)
            token_type_ids = np.zeros(len(input_ids), np.int32)
            token_type_ids[len(tokens_a) + 2 :] = 1
            instances.append(
                {
                    "input_ids": input_ids,
                    "token_type_ids": token_type_ids,
                    "next_sentence_label": int(is_random_next),
                }
            )
            current_chunk, current_length = [], 0
        i += 1
    return instances


# Record format, one array_record record per row: a row is one sentence pair, or several packed
# into one sequence (`pack_pairs`). Little-endian: a 4-byte header (uint8 format version, uint8
# number of pairs, 2 bytes padding), then per pair 6 bytes (uint8 next_sentence_label, 1 byte
# padding, uint16 num_tokens, uint16 num_type0_tokens), then the pairs' int32 token ids one after
# the other. Token types are 0 for the first num_type0_tokens tokens of a pair ([CLS] a [SEP]) and
# 1 after, so they are not stored.
_ROW_HEADER = struct.Struct("<BBxx")
_PAIR_HEADER = struct.Struct("<BxHH")
_RECORD_VERSION = 2


def serialize_row(pairs: Sequence[Mapping[str, Any]]) -> bytes:
    """Encodes one row of `create_instances` pairs as bytes (format above); see `parse_row`.

    Usage:
        >>> pair = {"input_ids": np.array([2, 7, 3, 8, 3]),
        ...         "token_type_ids": np.array([0, 0, 0, 1, 1]), "next_sentence_label": 1}
        >>> [p["next_sentence_label"] for p in parse_row(serialize_row([pair, pair]))]
        [1, 1]
    """
    parts = [_ROW_HEADER.pack(_RECORD_VERSION, len(pairs))]
    for pair in pairs:
        num_type0 = int(np.count_nonzero(np.asarray(pair["token_type_ids"]) == 0))
        label = int(pair["next_sentence_label"])
        parts.append(_PAIR_HEADER.pack(label, len(pair["input_ids"]), num_type0))
    parts += [np.asarray(pair["input_ids"], "<i4").tobytes() for pair in pairs]
    return b"".join(parts)


def parse_row(record: bytes) -> list[dict[str, Any]]:
    """Decodes `serialize_row` bytes: per pair input_ids, token_type_ids, next_sentence_label."""
    version, num_pairs = _ROW_HEADER.unpack_from(record)
    if version != _RECORD_VERSION:
        raise ValueError(
            f"Unknown pretraining record version {version} (this code reads {_RECORD_VERSION}); "
            "re-run `python -m bert_jax.prepare` with this version of bert_jax."
        )
    offset = _ROW_HEADER.size + num_pairs * _PAIR_HEADER.size
    pairs = []
    for i in range(num_pairs):
        label, num_tokens, num_type0 = _PAIR_HEADER.unpack_from(
            record, _ROW_HEADER.size + i * _PAIR_HEADER.size
        )
        input_ids = np.frombuffer(record, "<i4", num_tokens, offset).astype(np.int32)
        offset += 4 * num_tokens
        pairs.append(
            {
                "input_ids": input_ids,
                "token_type_ids": (np.arange(num_tokens) >= num_type0).astype(np.int32),
                "next_sentence_label": label,
            }
        )
    return pairs


def pack_pairs(
    pairs: Sequence[Mapping[str, Any]], seq_len: int, max_pairs_per_row: int
) -> list[list[Mapping[str, Any]]]:
    """Packs pairs into rows of at most ``seq_len`` tokens and ``max_pairs_per_row`` pairs
    (best-fit decreasing, :func:`bert_jax.data.packing.best_fit`). Deterministic given ``pairs``.

    >>> rows = pack_pairs([{"input_ids": [0] * n} for n in (6, 3, 5, 2)], 8, 2)
    >>> [[len(p["input_ids"]) for p in row] for row in rows]
    [[6, 2], [5, 3]]
    """
    rows = packing.best_fit([len(p["input_ids"]) for p in pairs], seq_len, max_pairs_per_row)
    return [[pairs[i] for i in row] for row in rows]


@functools.lru_cache(maxsize=8)
def _token_classes(vocab_size: int, special_ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(is_special bool[vocab_size], the non-special ids): built once per vocabulary, not per
    sequence (at a 30k vocabulary, rebuilding them was a third of the masking time)."""
    is_special = np.zeros(vocab_size, bool)
    is_special[list(special_ids)] = True
    is_special.flags.writeable = False
    non_special = np.flatnonzero(~is_special)
    non_special.flags.writeable = False
    return is_special, non_special


def mask_tokens(
    input_ids: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Sequence[int],
    word_start_mask: np.ndarray | None = None,
    masked_lm_prob: float = 0.15,
    max_predictions: int = 20,
    mask_token_ratio: float = 0.8,
    random_token_ratio: float = 0.1,
    whole_word: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Masked-LM corruption of one sequence, as the original create_masked_lm_predictions.

    min(max_predictions, max(1, round(len(input_ids) * masked_lm_prob))) positions are chosen
    uniformly among the non-special tokens (with `whole_word`, among whole words: a word start and
    its continuation pieces are chosen together, and a word that would overshoot the budget is
    skipped); each chosen token becomes [MASK] with probability `mask_token_ratio`, a random
    non-special token with probability `random_token_ratio`, and stays itself otherwise. Unlike
    the original, random tokens never are special tokens ([CLS], [SEP], [PAD], [MASK]...).

    Args:
      input_ids: int[n] token ids of one unpadded sequence.
      rng: numpy random generator (the only source of randomness).
      vocab_size: number of token ids.
      mask_id: id of [MASK].
      special_ids: ids never masked nor drawn as random tokens ([CLS], [SEP], [PAD], [MASK]).
      word_start_mask: bool[vocab_size], True where a token starts a word (needed by whole_word).
      masked_lm_prob, max_predictions: how many tokens to predict.
      mask_token_ratio, random_token_ratio: the 80/10/10 split (the rest keep their token).
      whole_word: mask whole words.

    Returns:
      (masked input_ids int32[n], masked_positions int32[max_predictions], masked_ids
      int32[max_predictions] (the original tokens), masked_weights float32[max_predictions]),
      positions sorted ascending, zero-padded with weight 0.

    Usage:
        >>> ids = np.array([2, 10, 11, 12, 13, 3])
        >>> out, pos, orig, w = mask_tokens(ids, np.random.default_rng(0), vocab_size=20,
        ...                                 mask_id=4, special_ids=[0, 2, 3, 4], max_predictions=4)
        >>> int(w.sum())
        1
    """
    if (
        not 0.0 <= mask_token_ratio + random_token_ratio <= 1.0
        or min(mask_token_ratio, random_token_ratio) < 0.0
    ):
        raise ValueError(
            f"mask_token_ratio={mask_token_ratio} and random_token_ratio={random_token_ratio} "
            "must be >= 0 and sum to at most 1 (the rest keep their token)."
        )
    if whole_word and word_start_mask is None:
        raise ValueError("whole_word=True needs word_start_mask (tokenizer.word_start_mask).")
    input_ids = np.asarray(input_ids, np.int32)
    is_special, non_special = _token_classes(vocab_size, tuple(sorted(special_ids)))
    candidates = np.flatnonzero(~is_special[input_ids])
    num_to_predict = min(max_predictions, max(1, round(len(input_ids) * masked_lm_prob)))

    if whole_word:
        # A group starts at a word start, or right after a special token / sequence start, so
        # words never span a [SEP].
        starts = word_start_mask[input_ids[candidates]]
        starts[1:] |= np.diff(candidates) > 1
        if len(starts):
            starts[0] = True
        group_of = np.cumsum(starts) - 1
        group_sizes = np.bincount(group_of).tolist()
        chosen, total = [], 0
        for group in rng.permutation(len(group_sizes)).tolist():
            if total >= num_to_predict:
                break
            if total + group_sizes[group] > num_to_predict:
                continue
            chosen.append(group)
            total += group_sizes[group]
        positions = candidates[np.isin(group_of, chosen)]
    else:
        positions = np.sort(rng.permutation(candidates)[:num_to_predict])

    masked = input_ids.copy()
    draw = rng.random(len(positions))
    to_mask = draw < mask_token_ratio
    to_random = ~to_mask & (draw < mask_token_ratio + random_token_ratio)
    masked[positions[to_mask]] = mask_id
    if to_random.any():
        masked[positions[to_random]] = rng.choice(non_special, int(to_random.sum()))

    num = len(positions)
    masked_positions = np.zeros(max_predictions, np.int32)
    masked_ids = np.zeros(max_predictions, np.int32)
    masked_weights = np.zeros(max_predictions, np.float32)
    masked_positions[:num] = positions
    masked_ids[:num] = input_ids[positions]
    masked_weights[:num] = 1.0
    return masked, masked_positions, masked_ids, masked_weights


def assemble_row(
    pairs: Sequence[Mapping[str, Any]], seq_len: int, max_predictions: int, max_pairs: int = 1
) -> dict[str, np.ndarray]:
    """Lays masked pairs side by side in one fixed-shape row (the collate step before batching).

    Args:
      pairs: each with input_ids and token_type_ids (int[n]), and masked_positions, masked_ids,
        masked_weights (as `mask_tokens` returns them) and next_sentence_label. No pairs at all
        makes a padding row (evaluation), marked by attention_mask[0] == 0.
      seq_len: the padded length; the pairs' tokens must fit.
      max_predictions: masked-LM slots of the row; the pairs' predictions fill them in order.
      max_pairs: 1 for plain rows; more for packed rows, which then also carry segment_ids (pair
        1, 2, ...; 0 = padding), position_ids restarting in every pair, cls_positions and
        nsp_weights, with next_sentence_label one per pair slot.

    Returns:
      input_ids, token_type_ids, attention_mask int32[seq_len]; masked_positions, masked_ids
      int32[max_predictions]; masked_weights float32[max_predictions]; next_sentence_label int32[]
      (int32[max_pairs] when packed).

    Usage:
        >>> pair = {"input_ids": np.array([2, 4, 3]), "token_type_ids": np.zeros(3, int),
        ...         "masked_positions": np.array([1]), "masked_ids": np.array([9]),
        ...         "masked_weights": np.array([1.0]), "next_sentence_label": 0}
        >>> assemble_row([pair], 8, 2)["attention_mask"].tolist()
        [1, 1, 1, 0, 0, 0, 0, 0]
        >>> assemble_row([pair, pair], 8, 2, max_pairs=2)["masked_positions"].tolist()
        [1, 4]
    """
    num_tokens = sum(len(p["input_ids"]) for p in pairs)
    if num_tokens > seq_len or len(pairs) > max_pairs:
        raise ValueError(
            f"A row of {len(pairs)} pairs and {num_tokens} tokens does not fit seq_len={seq_len} "
            f"and max_pairs_per_row={max_pairs}: read data prepared for this length "
            f"(prepare --max_seq_length={seq_len}), with --config.data.max_pairs_per_row at least "
            "the --max_pairs_per_row it was packed with."
        )
    row = {key: np.zeros(seq_len, np.int32) for key in ("input_ids", "token_type_ids")}
    row["attention_mask"] = (np.arange(seq_len) < num_tokens).astype(np.int32)
    segments = np.zeros(seq_len, np.int32)
    positions = np.zeros(seq_len, np.int32)
    starts, masked = [], []
    start = 0
    for i, pair in enumerate(pairs):
        n = len(pair["input_ids"])
        row["input_ids"][start : start + n] = pair["input_ids"]
        row["token_type_ids"][start : start + n] = pair["token_type_ids"]
        segments[start : start + n] = i + 1
        positions[start : start + n] = np.arange(n)
        chosen = np.asarray(pair["masked_weights"]) > 0
        masked.append((np.asarray(pair["masked_positions"])[chosen] + start,
                       np.asarray(pair["masked_ids"])[chosen]))  # fmt: skip
        starts.append(start)
        start += n
    chosen_positions = np.concatenate([m[0] for m in masked] or [[]])[:max_predictions]
    chosen_ids = np.concatenate([m[1] for m in masked] or [[]])[:max_predictions]
    num = len(chosen_positions)
    row["masked_positions"] = np.zeros(max_predictions, np.int32)
    row["masked_ids"] = np.zeros(max_predictions, np.int32)
    row["masked_weights"] = np.zeros(max_predictions, np.float32)
    row["masked_positions"][:num] = chosen_positions
    row["masked_ids"][:num] = chosen_ids
    row["masked_weights"][:num] = 1.0
    labels = [int(p["next_sentence_label"]) for p in pairs]
    if max_pairs == 1:
        row["next_sentence_label"] = np.int32(labels[0] if labels else 0)
        return row
    pad = max_pairs - len(pairs)
    row["segment_ids"] = segments
    row["position_ids"] = positions
    row["cls_positions"] = np.array(starts + [0] * pad, np.int32)
    row["next_sentence_label"] = np.array(labels + [0] * pad, np.int32)
    row["nsp_weights"] = np.array([1.0] * len(pairs) + [0.0] * pad, np.float32)
    return row
