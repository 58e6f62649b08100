"""bert_jax.extract_features against transformers: a random tiny BertModel (every parameter
random, three layers, three token types) and its tokenizers give the reference hidden states
(``output_hidden_states``) and the ids; sentence embeddings are pooled from them by
sentence-transformers' own arithmetic (``sentence_transformers_pool``)."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from bert_jax import convert
from bert_jax.extract_features import extract
from tests.test_interop import (
    HF_CONFIGS,
    randomise_,
    sentence_transformers_pool,
    write_sentence_transformers,
    write_tiny_vocab,
)

ATOL = 1e-4
HF_CONFIG = HF_CONFIGS["h48_gelu_new"]  # three layers, three token types
LENGTH = 16  # test_interop's sentence-transformers max_seq_length
ROOT = Path(__file__).parent.parent
# Accents, CJK, pairs, an empty line, and a text and a pair longer than LENGTH tokens.
LINES = [
    "Hello, World! Café naïve RÉSUMÉ.",
    "中文字符 and 日本語 (mixed)!",
    "Hello world ||| The café, the world.",
    "",
    "The quick fox; it's über-cool? Hello, hello, world, world, the end of it!",
    "the the the the the the the the ||| hello world hello world hello world hello world",
    "Hi.",
]


@dataclasses.dataclass
class Case:
    root: Path
    hf_dir: Path  # transformers' save_pretrained, with vocab.txt
    checkpoint: Path  # python -m bert_jax.convert of hf_dir
    model: transformers.BertModel
    vocab: Path
    input_file: Path


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Case:
    root = tmp_path_factory.mktemp("extract")
    vocab = write_tiny_vocab(root / "vocab.txt")
    model = randomise_(transformers.BertModel(transformers.BertConfig(**HF_CONFIG)), 7)
    hf_dir = root / "hf"
    model.save_pretrained(hf_dir)
    shutil.copy(vocab, hf_dir)  # lower-cased, as BertTokenizer by default
    convert.main(["--from=hf", f"--input={hf_dir}", f"--output={root / 'ckpt'}"])
    input_file = root / "input.txt"
    input_file.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return Case(root, hf_dir, root / "ckpt", model, vocab, input_file)


@dataclasses.dataclass
class Reference:
    ids: dict[str, np.ndarray]  # input_ids, token_type_ids, attention_mask [lines, LENGTH]
    tokens: list[list[str]]  # each line's real tokens
    states: list[np.ndarray]  # hidden_states: the embeddings' output, then each layer's
    truncated: int  # lines longer than max_length tokens


@torch.no_grad()
def reference(model, tokenizer, lines, max_length=LENGTH) -> Reference:
    """What transformers makes of ``lines``: pairs split at " ||| ", truncated longest first."""
    texts = [line.split(" ||| ") for line in lines]
    enc = [tokenizer(*t, truncation=True, max_length=max_length) for t in texts]
    ids = {k: np.zeros((len(lines), max_length), np.int64) for k in enc[0]}
    for row, e in enumerate(enc):
        for k, v in e.items():
            ids[k][row, : len(v)] = v
    out = model(**{k: torch.from_numpy(v) for k, v in ids.items()}, output_hidden_states=True)
    tokens = [tokenizer.convert_ids_to_tokens(e["input_ids"]) for e in enc]
    truncated = sum(len(tokenizer(*t)["input_ids"]) > max_length for t in texts)
    return Reference(ids, tokens, [h.numpy() for h in out.hidden_states], truncated)


@pytest.fixture(scope="module")
def expected(case) -> Reference:
    slow = transformers.BertTokenizer(str(case.vocab), do_lower_case=True)
    return reference(case.model, slow, LINES)


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def assert_jsonl_matches(records, ref: Reference, layers, hidden_states) -> None:
    """Each line once, in order, its tokens and every chosen layer's values at each token."""
    assert [r["linex_index"] for r in records] == list(range(len(ref.tokens)))
    for i, record in enumerate(records):
        assert list(record) == ["linex_index", "features"]
        assert [f["token"] for f in record["features"]] == ref.tokens[i]
        for t, feature in enumerate(record["features"]):
            assert [layer["index"] for layer in feature["layers"]] == list(layers)
            for layer, h in zip(feature["layers"], hidden_states, strict=True):
                assert all(round(v, 6) == v for v in layer["values"])
                np.testing.assert_allclose(
                    layer["values"], ref.states[h][i, t], atol=ATOL, rtol=0, err_msg=f"{i} {t}"
                )


def test_jsonl_features_and_concatenated_pooling(case, expected, tmp_path):
    layers = (-1, -2, 0)  # hidden_states 3, 2 and 1: the original counts Transformer layers
    info = extract(
        case.checkpoint,
        case.input_file,
        tmp_path / "out",
        layers=layers,
        max_seq_length=LENGTH,
        batch_size=8,
        pooling="cls,max,mean",
        normalize=False,
    )
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["embeddings.npy", "features.jsonl", "info.json"]
    assert json.loads((out / "info.json").read_text()) == info
    assert info["lines"] == len(LINES) and info["truncated_lines"] == expected.truncated
    assert_jsonl_matches(read_jsonl(out / "features.jsonl"), expected, layers, (3, 2, 1))

    mask = expected.ids["attention_mask"]
    reference_embeddings = sentence_transformers_pool(
        expected.states[-1], mask, ("cls", "max", "mean"), normalize=False
    )
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.shape == (len(LINES), 3 * HF_CONFIG["hidden_size"])
    np.testing.assert_allclose(embeddings, reference_embeddings, atol=ATOL, rtol=0)


def test_npy_features_and_normalised_mean(case, expected, tmp_path):
    layers = (-3, 2)
    info = extract(
        case.checkpoint,
        case.input_file,
        tmp_path / "out",
        layers=layers,
        output_format="npy",
        max_seq_length=LENGTH,
        batch_size=8,
        pooling="mean",
        normalize=True,
    )
    out = tmp_path / "out"
    assert set(info["files"]) == {
        "input_ids.npy",
        "token_type_ids.npy",
        "attention_mask.npy",
        "layer_-3.npy",
        "layer_2.npy",
        "embeddings.npy",
    }
    for name, ids in expected.ids.items():
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), ids, err_msg=name)
    assert (expected.ids["token_type_ids"] == 1).any()
    mask = expected.ids["attention_mask"][..., None] > 0
    for layer, h in zip(layers, (1, 3), strict=True):
        states = np.load(out / f"layer_{layer}.npy")
        assert states.shape == (len(LINES), LENGTH, HF_CONFIG["hidden_size"])
        assert states.dtype == np.float32
        np.testing.assert_allclose(
            states, np.where(mask, expected.states[h], 0), atol=ATOL, rtol=0, err_msg=str(layer)
        )
    reference_embeddings = sentence_transformers_pool(
        expected.states[-1], expected.ids["attention_mask"], ("mean",), normalize=True
    )
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), reference_embeddings, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(reference_embeddings, axis=-1), 1.0, rtol=1e-6)


def test_sentence_transformers_directory_pools_its_way(case, tmp_path):
    """A sentence-transformers directory read as it is: its tokenizer.json, its pooling (mean,
    normalised) and max_seq_length are the defaults; embeddings alone (no layers).

    Single texts, as sentence-transformers embeds them: the fast tokenizer cuts a pair whose
    sides are equally long differently (the first side on a tie; the original, BertTokenizer
    and bert_jax the second)."""
    encoder = transformers.BertModel(case.model.config)
    encoder.load_state_dict(case.model.state_dict())
    source = tmp_path / "st"
    model_dir = write_sentence_transformers(source, encoder, case.vocab, "", ("mean",), True)
    texts = [line for line in LINES if " ||| " not in line]
    input_file = tmp_path / "texts.txt"
    input_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    info = extract(source, input_file, tmp_path / "out", layers=(), batch_size=8)
    assert info["pooling"] == {"modes": ["mean"], "normalize": True, "max_seq_length": LENGTH}
    assert info["max_seq_length"] == LENGTH
    assert sorted(os.listdir(tmp_path / "out")) == ["embeddings.npy", "info.json"]

    fast = transformers.AutoTokenizer.from_pretrained(model_dir)
    ref = reference(case.model, fast, texts)
    mask = ref.ids["attention_mask"]
    reference_embeddings = sentence_transformers_pool(ref.states[-1], mask, ("mean",), True)
    embeddings = np.load(tmp_path / "out" / "embeddings.npy")
    np.testing.assert_allclose(embeddings, reference_embeddings, atol=ATOL, rtol=0)


def test_sharded_chunked_run_keeps_every_line_once_in_order(case, tmp_path):
    """45 lines of mixed lengths in chunks of 16 on a (4, 2, 1) mesh of the 8 devices (batches
    sorted by length within a chunk, the last one short): each line once, in input order."""
    rng = np.random.default_rng(0)
    words = ["hello", "world", "the", "café", "fox", "über", "中文", "(mixed)!", "it's"]
    lines = [" ".join(rng.choice(words, rng.integers(0, 14))) for _ in range(45)]
    lines[7] += " ||| " + lines[8]
    input_file = tmp_path / "many.txt"
    input_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = extract(
        case.checkpoint,
        input_file,
        tmp_path / "out",
        layers=(-1,),
        max_seq_length=LENGTH,
        batch_size=8,
        pooling="none",
        mesh_shape=(4, 2, 1),
        chunk_rows=16,
    )
    assert info["lines"] == 45 and info["pooling"] is None
    slow = transformers.BertTokenizer(str(case.vocab), do_lower_case=True)
    ref = reference(case.model, slow, lines)
    assert len({len(t) for t in ref.tokens}) > 4  # several length buckets
    assert_jsonl_matches(read_jsonl(tmp_path / "out" / "features.jsonl"), ref, (-1,), (3,))


def test_command_line(case, expected, tmp_path):
    """python -m bert_jax.extract_features on two devices, from the Hugging Face directory."""
    cmd = [
        sys.executable,
        "-m",
        "bert_jax.extract_features",
        f"--checkpoint={case.hf_dir}",
        f"--input_file={case.input_file}",
        f"--output={tmp_path / 'out'}",
        "--layers=-1",
        "--format=npy",
        f"--max_seq_length={LENGTH}",
        "--batch_size=4",
        "--pooling=cls",
    ]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert expected.truncated == 4  # lines 0, 1, 4 and the pair of line 5
    assert (
        f"{expected.truncated} of {len(LINES)} lines were longer than max_seq_length" in proc.stderr
    )
    mask = expected.ids["attention_mask"][..., None] > 0
    states = np.load(tmp_path / "out" / "layer_-1.npy")
    np.testing.assert_allclose(states, np.where(mask, expected.states[3], 0), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "embeddings.npy"), expected.states[3][:, 0], atol=ATOL, rtol=0
    )


def test_refuses_to_overwrite_and_names_bad_inputs(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=f"--output={out} exists.*delete {out}"):
        extract(case.checkpoint, case.input_file, out)
    assert os.listdir(out) == ["mine.txt"]

    with pytest.raises(FileNotFoundError, match="--input_file=.*absent.txt does not exist"):
        extract(case.checkpoint, tmp_path / "absent.txt", tmp_path / "new")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        extract(case.checkpoint, tmp_path / "empty.txt", tmp_path / "new")
    with pytest.raises(ValueError, match="3 is not a layer of this 3-layer model"):
        extract(case.checkpoint, case.input_file, tmp_path / "new", layers=(3,))
    with pytest.raises(ValueError, match="Nothing to write"):
        extract(case.checkpoint, case.input_file, tmp_path / "new", layers=(), pooling="none")
    with pytest.raises(FileNotFoundError, match="--checkpoint=.*nowhere does not exist"):
        extract(tmp_path / "nowhere", case.input_file, tmp_path / "new")
    assert not (tmp_path / "new").exists()
