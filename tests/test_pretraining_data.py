"""Pretraining data: sentence pairs, masking statistics, record format, `prepare` end to end."""

import collections
import glob
import json
import os

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader
from scipy import stats

from bert_jax import prepare as prepare_lib
from bert_jax import tokenizers
from bert_jax.data import pretraining
from bert_jax.data.synthetic import synthetic_documents

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, CLS, SEP, MASK]


# ------------------------------------------------------------------------------------------------
# Masking.


def _random_pairs(num: int, vocab_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """[CLS] a [SEP] b [SEP] with random lengths and random non-special tokens."""
    pairs = []
    for _ in range(num):
        a = rng.integers(5, vocab_size, rng.integers(1, 60))
        b = rng.integers(5, vocab_size, rng.integers(1, 60))
        pairs.append(np.concatenate([[CLS], a, [SEP], b, [SEP]]).astype(np.int32))
    return pairs


def test_mask_tokens_counts_ratios_and_specials():
    vocab_size, max_predictions = 50, 12
    rng = np.random.default_rng(0)
    outcome = collections.Counter()
    position_hits = np.zeros(40)
    for ids in _random_pairs(3000, vocab_size, rng):
        masked, positions, masked_ids, weights = pretraining.mask_tokens(
            ids,
            rng,
            vocab_size=vocab_size,
            mask_id=MASK,
            special_ids=SPECIAL,
            max_predictions=max_predictions,
        )
        assert masked.dtype == positions.dtype == masked_ids.dtype == np.int32
        assert weights.dtype == np.float32 and positions.shape == (max_predictions,)
        # The original's count: round(len(tokens) * 0.15), at least 1, at most max_predictions.
        expected = min(max_predictions, max(1, round(len(ids) * 0.15)))
        num = int(weights.sum())
        assert num == expected
        assert np.all(weights[:num] == 1) and np.all(weights[num:] == 0)
        chosen = positions[:num]
        assert np.all(np.diff(chosen) > 0), "positions sorted and distinct"
        assert np.all(positions[num:] == 0) and np.all(masked_ids[num:] == 0)
        assert not np.isin(ids[chosen], SPECIAL).any(), "never [CLS]/[SEP]/[PAD]"
        np.testing.assert_array_equal(masked_ids[:num], ids[chosen])
        unchosen = np.setdiff1d(np.arange(len(ids)), chosen)
        np.testing.assert_array_equal(masked[unchosen], ids[unchosen])
        for new, old in zip(masked[chosen], ids[chosen], strict=True):
            outcome["mask" if new == MASK else "same" if new == old else "random"] += 1
            assert new == MASK or new not in SPECIAL, "random tokens are never special"
        # Hits on the first 40 positions of segment a, in pairs where a is that long.
        if np.argmax(ids == SEP) > 40:
            position_hits += np.isin(np.arange(1, 41), chosen)

    total = sum(outcome.values())
    # A random draw equals the original token with probability 1 / #non-special tokens.
    p_same_random = 0.1 / (vocab_size - len(SPECIAL))
    for kind, p in [("mask", 0.8), ("random", 0.1 - p_same_random), ("same", 0.1 + p_same_random)]:
        assert stats.binomtest(outcome[kind], total, p).pvalue > 1e-3, (kind, outcome, total)
    # Every non-special position is equally likely to be chosen.
    assert stats.chisquare(position_hits).pvalue > 1e-3


@pytest.mark.parametrize(
    "mask_ratio, random_ratio, expect",
    [(1.0, 0.0, "mask"), (0.0, 0.0, "same"), (0.0, 1.0, "random")],
)
def test_mask_tokens_ratio_extremes(mask_ratio, random_ratio, expect):
    rng = np.random.default_rng(1)
    for ids in _random_pairs(50, 10_000, rng):
        masked, positions, _, weights = pretraining.mask_tokens(
            ids,
            rng,
            vocab_size=10_000,
            mask_id=MASK,
            special_ids=SPECIAL,
            mask_token_ratio=mask_ratio,
            random_token_ratio=random_ratio,
        )
        chosen = positions[: int(weights.sum())]
        if expect == "mask":
            assert np.all(masked[chosen] == MASK)
        elif expect == "same":
            np.testing.assert_array_equal(masked, ids)
        else:  # 1 in 10k chance per token to redraw the same token
            assert np.mean(masked[chosen] != ids[chosen]) > 0.95
            assert not np.isin(masked[chosen], SPECIAL).any()


def test_mask_tokens_rejects_bad_ratios_and_missing_word_starts():
    ids = np.array([CLS, 7, 8, SEP])
    kwargs = dict(vocab_size=10, mask_id=MASK, special_ids=SPECIAL)
    with pytest.raises(ValueError, match="sum to at most 1"):
        pretraining.mask_tokens(ids, np.random.default_rng(0), mask_token_ratio=0.9,
                                random_token_ratio=0.2, **kwargs)  # fmt: skip
    with pytest.raises(ValueError, match="word_start_mask"):
        pretraining.mask_tokens(ids, np.random.default_rng(0), whole_word=True, **kwargs)


def _reference_word_groups(ids: np.ndarray, word_start: np.ndarray) -> list[list[int]]:
    """The original's cand_indexes: a "##" piece joins the word before it (not across specials)."""
    groups: list[list[int]] = []
    previous_special = True
    for i, token in enumerate(ids.tolist()):
        if token in SPECIAL:
            previous_special = True
            continue
        if groups and not word_start[token] and not previous_special:
            groups[-1].append(i)
        else:
            groups.append([i])
        previous_special = False
    return groups


def test_whole_word_masking_masks_whole_words():
    vocab_size = 200
    word_start = np.zeros(vocab_size, bool)
    word_start[:100] = True  # ids >= 100 are "##" continuation pieces
    rng = np.random.default_rng(2)
    words_masked = pieces_masked = partial = 0
    for _ in range(500):
        # Words of 1-3 pieces; segment b may start with a stray continuation piece.
        def segment():
            return [
                t
                for _ in range(rng.integers(3, 15))
                for t in [rng.integers(5, 100), *rng.integers(100, 200, rng.integers(0, 3))]
            ]

        ids = np.array([CLS, *segment(), SEP, 150, *segment(), SEP], np.int32)
        _, positions, _, weights = pretraining.mask_tokens(
            ids,
            rng,
            vocab_size=vocab_size,
            mask_id=MASK,
            special_ids=SPECIAL,
            word_start_mask=word_start,
            whole_word=True,
            max_predictions=8,
        )
        chosen = set(positions[: int(weights.sum())].tolist())
        budget = min(8, max(1, round(len(ids) * 0.15)))
        assert 0 < len(chosen) <= budget
        for group in _reference_word_groups(ids, word_start):
            hit = chosen.intersection(group)
            partial += 0 < len(hit) < len(group)
            words_masked += len(hit) == len(group)
            pieces_masked += len(hit)
    assert partial == 0, "a word is masked entirely or not at all"
    assert pieces_masked > words_masked > 0, "multi-piece words are masked too"


# ------------------------------------------------------------------------------------------------
# Sentence pairs.


def _traceable_corpus(rng: np.random.Generator, num_docs: int = 40):
    """Documents whose token ids identify document and position: document d's tokens are
    d * 10_000 + 10 + (position in the document), consecutive across its sentences."""
    documents = []
    for d in range(num_docs):
        lengths = rng.integers(1, 12, rng.integers(3, 13))
        start = d * 10_000 + 10 + np.cumsum([0, *lengths])
        documents.append([list(range(a, b)) for a, b in zip(start[:-1], start[1:], strict=True)])
    return documents


def _is_run(tokens: np.ndarray) -> bool:
    return bool(np.all(np.diff(tokens) == 1))


def test_create_instances_pairs_labels_and_segments():
    rng = np.random.default_rng(3)
    documents = _traceable_corpus(rng)
    max_len = 48
    labels = []
    for _ in range(5):  # dupes, as prepare's dupe_factor
        for index, document in enumerate(documents):
            for pair in pretraining.create_instances(
                document, documents, index, max_len, 0.1, rng, CLS, SEP
            ):
                ids, types = pair["input_ids"], pair["token_type_ids"]
                assert ids.dtype == types.dtype == np.int32
                assert len(ids) <= max_len and ids[0] == CLS and ids[-1] == SEP
                (seps,) = np.nonzero(ids == SEP)
                assert len(seps) == 2
                first_sep = seps[0]
                # 0 up to and including the first [SEP], 1 after.
                np.testing.assert_array_equal(types, np.arange(len(ids)) > first_sep)
                a, b = ids[1:first_sep], ids[first_sep + 1 : -1]
                assert len(a) >= 1 and len(b) >= 1
                assert np.all(a // 10_000 == index), "segment a comes from the document"
                assert _is_run(a) and _is_run(b), "contiguous stretches of documents"
                if pair["next_sentence_label"] == 0:  # IsNext: b follows a in the document
                    assert np.all(b // 10_000 == index) and b[0] > a[-1]
                else:  # random next: from one other document, never this one
                    assert len(set(b // 10_000)) == 1 and b[0] // 10_000 != index
                labels.append(pair["next_sentence_label"])
    # Half, plus the few single-sentence chunks (always random-next, as in the original).
    assert 0.45 < np.mean(labels) < 0.6, np.mean(labels)


def test_create_instances_single_document_and_bad_length():
    rng = np.random.default_rng(4)
    documents = _traceable_corpus(rng, 5)
    # A single document cannot make random-next pairs: it yields only IsNext pairs (maybe none).
    for pair in pretraining.create_instances(
        documents[0], documents[:1], 0, 64, 0.0, rng, CLS, SEP
    ):
        assert pair["next_sentence_label"] == 0
    with pytest.raises(ValueError, match="max_seq_length must be >= 5"):
        pretraining.create_instances(documents[0], documents, 0, 4, 0.0, rng, CLS, SEP)


def test_truncation_matches_original_algorithm():
    """The index-based truncation equals the original list-popping loop, coin for coin."""

    def original(tokens_a, tokens_b, max_num_tokens, rng):
        while len(tokens_a) + len(tokens_b) > max_num_tokens:
            trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
            if rng.random() < 0.5:
                del trunc[0]
            else:
                trunc.pop()
        return tokens_a, tokens_b

    sizes = np.random.default_rng(5).integers(1, 80, (300, 3))
    for seed, (la, lb, limit) in enumerate(sizes):
        a, b = list(range(la)), list(range(100, 100 + lb))
        limit = max(2, int(limit))
        expected = original(list(a), list(b), limit, np.random.default_rng(seed))
        got = pretraining._truncate_seq_pair(a, b, limit, np.random.default_rng(seed))
        assert got == expected


def test_record_roundtrip():
    pair = {
        "input_ids": np.array([CLS, 70000, 8, SEP, 9, SEP], np.int32),
        "token_type_ids": np.array([0, 0, 0, 0, 1, 1], np.int32),
        "next_sentence_label": 1,
    }
    other = {"input_ids": np.array([CLS, 5, SEP, SEP]), "token_type_ids": np.array([0, 0, 0, 1]),
             "next_sentence_label": 0}  # fmt: skip
    record = pretraining.serialize_row([pair, other])
    assert len(record) == 4 + 2 * 6 + 4 * 10
    parsed = pretraining.parse_row(record)
    for got, want in zip(parsed, [pair, other], strict=True):
        for key in ("input_ids", "token_type_ids"):
            np.testing.assert_array_equal(got[key], want[key])
            assert got[key].dtype == np.int32
        assert got["next_sentence_label"] == want["next_sentence_label"]
    with pytest.raises(ValueError, match="re-run"):
        pretraining.parse_row(b"\x09" + record[1:])


def _masked_pair(ids, types, positions, label):
    return {
        "input_ids": np.array(ids),
        "token_type_ids": np.array(types),
        "masked_positions": np.array(positions + [0]),
        "masked_ids": np.array([ids[p] for p in positions] + [0]),
        "masked_weights": np.array([1.0] * len(positions) + [0.0]),
        "next_sentence_label": label,
    }


def test_assemble_row_shapes():
    example = _masked_pair([CLS, 7, SEP, 8, SEP], [0, 0, 0, 1, 1], [1], 1)
    padded = pretraining.assemble_row([example], 8, 2)
    assert padded["input_ids"].tolist() == [CLS, 7, SEP, 8, SEP, 0, 0, 0]
    assert padded["token_type_ids"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert padded["attention_mask"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert padded["masked_positions"].tolist() == [1, 0]
    assert padded["masked_weights"].tolist() == [1.0, 0.0]
    assert padded["next_sentence_label"].dtype == np.int32
    assert padded["masked_weights"].dtype == np.float32
    assert "segment_ids" not in padded
    with pytest.raises(ValueError, match="--max_seq_length=4"):
        pretraining.assemble_row([example], 4, 2)


def test_assemble_packed_row():
    a = _masked_pair([CLS, 7, SEP, 8, SEP], [0, 0, 0, 1, 1], [1, 3], 1)
    b = _masked_pair([CLS, 9, SEP, 6, 6, SEP], [0, 0, 0, 1, 1, 1], [4], 0)
    row = pretraining.assemble_row([a, b], 12, 4, max_pairs=3)
    assert row["input_ids"].tolist() == [CLS, 7, SEP, 8, SEP, CLS, 9, SEP, 6, 6, SEP, 0]
    assert row["token_type_ids"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0]
    assert row["segment_ids"].tolist() == [1] * 5 + [2] * 6 + [0]
    assert row["position_ids"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 0]
    assert row["cls_positions"].tolist() == [0, 5, 0]
    assert row["next_sentence_label"].tolist() == [1, 0, 0]
    assert row["nsp_weights"].tolist() == [1.0, 1.0, 0.0]
    assert row["masked_positions"].tolist() == [1, 3, 9, 0]  # b's position 4 moved by 5
    assert row["masked_ids"].tolist() == [7, 8, 6, 0]
    assert row["masked_weights"].tolist() == [1.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="max_pairs_per_row"):
        pretraining.assemble_row([a, b], 12, 4, max_pairs=1)


def test_pack_pairs_fits_and_keeps_every_pair():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 129, 2000)
    pairs = [{"input_ids": np.arange(n), "id": i} for i, n in enumerate(lengths)]
    rows = pretraining.pack_pairs(pairs, 128, 3)
    assert sorted(p["id"] for row in rows for p in row) == list(range(2000))
    assert all(len(row) <= 3 and sum(len(p["input_ids"]) for p in row) <= 128 for row in rows)
    # Far fewer rows than pairs; near the lower bound set by the total number of tokens.
    assert len(rows) < 0.75 * len(pairs)
    assert len(rows) <= 1.1 * lengths.sum() / 128 + 1


# ------------------------------------------------------------------------------------------------
# Synthetic corpus.


def test_synthetic_documents_grammar_and_determinism():
    docs = list(synthetic_documents(300, seed=7))
    assert docs == list(synthetic_documents(300, seed=7))
    assert docs != list(synthetic_documents(300, seed=8))
    assert all(4 <= len(doc) <= 20 for doc in docs)
    words = {w for doc in docs for s in doc for w in s.split()}
    assert 200 < len(words) < 500
    for sentence in (s for doc in docs for s in doc):
        tokens = sentence.split()
        assert tokens[-1] == "."
        # Number agreement in the simplest form "DET NOUN VERB ..." : "these" takes a plural noun.
        if tokens[0] in ("these", "those", "many", "two"):
            assert tokens[1].endswith("s") or tokens[2].endswith("s")


# ------------------------------------------------------------------------------------------------
# prepare, end to end.


def _read_records(path: str) -> list[dict]:
    reader = ArrayRecordReader(path)
    try:
        return [pair for r in reader.read_all() for pair in pretraining.parse_row(r)]
    finally:
        reader.close()


def _write_vocab(path: str, words: list[str]) -> str:
    with open(path, "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words]) + "\n")
    return path


def test_prepare_malformed_text(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    vocab = _write_vocab(str(tmp_path / "vocab.txt"), words)
    lines = [
        b"alpha beta gamma .",
        b"beta gamma delta .",
        b"",
        b"",  # runs of blank lines are one boundary, not empty documents
        b"gamma \xff\xfe delta .",  # 2 bytes that are not UTF-8
        b"delta\x01 epsilon\x07 alpha .",  # 2 control characters
        b"",
        b"\x00\x02\x03",  # 3 control characters: the document is left empty
        b"",
        b"alpha " * 500,  # 3000 bytes: truncated to max_line_bytes
        b"epsilon beta .",
        b"",
    ]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus/a.txt").write_bytes(b"\n".join(lines))
    (tmp_path / "corpus/b.txt").write_bytes("beta caf\u00e9 alpha .\nalpha alpha .".encode())
    summary = prepare_lib.prepare(
        str(tmp_path / "out"),
        input=str(tmp_path / "corpus/*.txt"),
        vocab=vocab,
        lower_case=True,
        max_seq_lengths=(16,),
        dupe_factor=3,
        eval_fraction=0.0,
        max_line_bytes=1000,
    )
    assert summary["cleaning"] == {
        "non_utf8_bytes_replaced": 2,
        "control_chars_removed": 5,
        "long_lines_truncated": 1,
        "empty_documents_dropped": 1,
    }
    assert summary["documents"] == {"train": 4, "eval": 0}
    assert summary["sentences"] == {"train": 8, "eval": 0}
    records = _read_records(str(tmp_path / "out/seq16/train-00000-of-00001.array_record"))
    assert len(records) == summary["instances"]["16"]["train"] > 0
    assert sum(len(r["input_ids"]) for r in records) == summary["tokens"]["16"]["train"]
    tokenizer = tokenizers.load_tokenizer(str(tmp_path / "out/tokenizer"))
    assert tokenizer.vocab_size == len(words) + 6
    for record in records:
        assert len(record["input_ids"]) <= 16
        assert record["input_ids"].max() < tokenizer.vocab_size
    with open(tmp_path / "out/summary-00000-of-00001.json") as f:
        assert json.load(f) == summary


def test_prepare_synthetic_spm_two_lengths(tmp_path):
    summary = prepare_lib.main(
        [
            f"--output={tmp_path}",
            "--synthetic=150",
            "--spm_vocab_size=300",
            "--max_seq_length=32,64",
            "--dupe_factor=2",
            "--eval_fraction=0.1",
        ]
    )
    assert sum(summary["documents"].values()) == 150
    assert summary["documents"]["eval"] > 0
    for length in (32, 64):
        for split in ("train", "eval"):
            records = _read_records(f"{tmp_path}/seq{length}/{split}-00000-of-00001.array_record")
            assert len(records) == summary["instances"][str(length)][split] > 0
            assert max(len(r["input_ids"]) for r in records) <= length
    # Longer sequences hold more tokens per pair, so fewer pairs.
    assert summary["instances"]["64"]["train"] < summary["instances"]["32"]["train"]
    labels = [r["next_sentence_label"] for r in _read_records(glob.glob(f"{tmp_path}/seq32/t*")[0])]
    assert 0.4 < np.mean(labels) < 0.65
    tokenizer = tokenizers.load_tokenizer(f"{tmp_path}/tokenizer")
    assert (tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (CLS, SEP, MASK)


def test_prepare_two_shards_cover_every_document_once(tmp_path):
    num_docs = 30
    words = [f"doc{i}" for i in range(num_docs)] + ["x", "y"]
    vocab = _write_vocab(str(tmp_path / "vocab.txt"), words)
    # Document i: three sentences, each with the marker doc{i}.
    text = "\n\n".join(f"doc{i} x .\ny doc{i} .\ndoc{i} y x ." for i in range(num_docs))
    (tmp_path / "corpus.txt").write_text(text)
    tokenizer = tokenizers.WordPiece(vocab, lower_case=True)
    marker_ids = {tokenizer.token_to_id(f"doc{i}"): i for i in range(num_docs)}
    seen = {}
    for shard in (0, 1):
        summary = prepare_lib.prepare(
            str(tmp_path / "out"),
            input=str(tmp_path / "corpus.txt"),
            vocab=vocab,
            max_seq_lengths=(32,),
            dupe_factor=2,
            short_seq_prob=0.0,
            eval_fraction=0.2,
            num_shards=2,
            shard_index=shard,
        )
        assert sum(summary["documents"].values()) == num_docs // 2
        docs = set()
        for split in ("train", "eval"):
            path = f"{tmp_path}/out/seq32/{split}-{shard:05d}-of-00002.array_record"
            for record in _read_records(path):
                # Segment a always comes from the document that made the pair.
                a = record["input_ids"][: np.argmax(record["input_ids"] == SEP)]
                docs |= {marker_ids[t] for t in a.tolist() if t in marker_ids}
        seen[shard] = docs
    assert seen[0] == set(range(0, num_docs, 2)) and seen[1] == set(range(1, num_docs, 2))
    assert os.path.exists(tmp_path / "out/summary-00001-of-00002.json")


def test_prepare_vocab_once_then_shards(tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="--only_vocab"):
        prepare_lib.prepare(out, synthetic=50, spm_vocab_size=200, num_shards=2)
    summary = prepare_lib.prepare(out, synthetic=50, spm_vocab_size=200, only_vocab=True)
    assert summary["vocab_size"] > 100 and not glob.glob(f"{out}/seq*")
    summary = prepare_lib.prepare(
        out, synthetic=50, vocab_dir=f"{out}/tokenizer", num_shards=2, shard_index=1
    )
    assert summary["instances"]["128"]["train"] > 0
    with pytest.raises(ValueError, match="exactly one of --input"):
        prepare_lib.prepare(out, vocab_dir=f"{out}/tokenizer")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        prepare_lib.prepare(out, input=str(tmp_path / "nothing*.txt"), vocab_dir=f"{out}/tokenizer")


def test_split_sentences():
    text = 'He said "Stop." Then he left. It was 5 p.m. and dark! Really? yes.\nNext line'
    assert prepare_lib.split_sentences(text) == [
        'He said "Stop."',
        "Then he left.",
        "It was 5 p.m. and dark!",
        "Really? yes.",
        "Next line",
    ]


def test_prepare_tfds_input(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        summary = prepare_lib.prepare(
            str(tmp_path), tfds="imdb_reviews:train", spm_vocab_size=200, max_seq_lengths=(32,)
        )
        assert sum(summary["documents"].values()) == 20
        assert summary["instances"]["32"]["train"] > 0
        with pytest.raises(KeyError, match="--tfds_text_key"):
            prepare_lib.prepare(
                str(tmp_path / "other"),
                tfds="imdb_reviews",
                tfds_text_key="body",
                vocab_dir=f"{tmp_path}/tokenizer",
            )


def test_prepare_refuses_to_overwrite_a_prepared_shard(tmp_path):
    prepare_lib.prepare(str(tmp_path), synthetic=20, spm_vocab_size=64, max_seq_lengths=[32])
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.array_record"))
    with pytest.raises(FileExistsError, match="prepare into a new --output"):
        prepare_lib.prepare(str(tmp_path), synthetic=20, spm_vocab_size=64, max_seq_lengths=[32])
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.array_record")) == before


def test_small_buffers_still_get_random_next_segments(tmp_path):
    """One document per buffer: random next segments come from the previous buffer's documents,
    so the pairs look like those of one big buffer (same NSP balance)."""

    def random_next_rate(buffer_documents):
        out = tmp_path / str(buffer_documents)
        prepare_lib.prepare(
            str(out),
            synthetic=60,
            spm_vocab_size=64,
            max_seq_lengths=[64],
            dupe_factor=2,
            buffer_documents=buffer_documents,
            eval_fraction=0.0,
        )
        pairs = _read_records(str(out / "seq64" / "train-00000-of-00001.array_record"))
        return np.mean([p["next_sentence_label"] for p in pairs])

    one_buffer, tiny_buffers = random_next_rate(1000), random_next_rate(1)
    assert abs(tiny_buffers - one_buffer) < 0.1, (tiny_buffers, one_buffer)
