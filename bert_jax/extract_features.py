r"""Per-token features of chosen layers and sentence embeddings for a text file.

  python -m bert_jax.extract_features --checkpoint=ckpt/bert-base --input_file=texts.txt \
      --output=/tmp/features --layers=-1,-2,-3,-4 --max_seq_length=128 --batch_size=32

The input has one text per line; a line ``text_a ||| text_b`` is a sentence pair (``[CLS] a
[SEP] b [SEP]``, token types 0 and 1), as in google-research/bert's ``extract_features.py``. A
blank line is an empty text, so that line ``i`` is always example ``i``. Texts longer than
``--max_seq_length`` tokens are truncated as the original does (the longer side of a pair first),
and counted in a log line.

``--checkpoint`` is a bert_jax pretrained directory (``python -m bert_jax.convert``), a
pretraining or fine-tuning workdir, or a Hugging Face / sentence-transformers directory.
``--layers`` are the original's indices into the Transformer layers' outputs: 0 is the first
layer, -1 the last (the embeddings' output is not one of them).

``--output`` is a new directory holding:

  features.jsonl    (--format=jsonl) one line per input line, the original's format:
                    {"linex_index": i, "features": [{"token": "[CLS]", "layers": [{"index": -1,
                    "values": [...]}, ...]}, ...]}, the values rounded to 6 decimals
  layer_{j}.npy     (--format=npy) float32 [lines, max_seq_length, hidden] for each layer j,
                    0 past each text's tokens; with input_ids.npy, token_type_ids.npy and
                    attention_mask.npy (int32 [lines, max_seq_length]). Written through memory
                    maps, a chunk of lines at a time, so a large run never holds them in memory.
  embeddings.npy    float32 [lines, dim]: the last layer pooled by --pooling (cls: the [CLS]
                    state; mean: the mean over the real tokens; max; or several, concatenated),
                    L2-normalised with --normalize. A checkpoint with a sentence-transformers
                    pooling (pooling.json, or the directory's own config) is pooled its way by
                    default, to its max_seq_length; otherwise mean, unnormalised. --pooling=none
                    writes no embeddings.
  info.json         what was run: lines, layers, files, pooling, max_seq_length, truncated lines.

Batches run over all devices (``--mesh_shape``, data-parallel by default; on several hosts run
the same command on each, as ``bert_jax.main``) through the fine-tuning loop's ``predict``,
grouped by length (eighths of ``--max_seq_length``), which changes nothing at the real tokens.
The output is written into ``OUTPUT.incomplete`` and moved into place at the end, so a failed run
leaves no half output behind.

In Python::

    from bert_jax.extract_features import extract
    info = extract("ckpt/bert-base", "texts.txt", "/tmp/features", layers=(-1, -2),
                   output_format="npy", pooling="cls", normalize=True)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bert_jax import checkpoints, interop, pretrained, tokenizers
from bert_jax.data import buckets
from bert_jax.finetune import make_predict_fn, predict
from bert_jax.main import show_own_info_only, start_distributed
from bert_jax.metrics import Progress
from bert_jax.models.bert import BertConfig, BertModel, to_layer_layout
from bert_jax.sharding import DEFAULT_RULES, logical_shardings, make_mesh
from bert_jax.train import check_batch_size

DEFAULT_LAYERS = (-1, -2, -3, -4)  # the original's --layers
DEFAULT_MAX_SEQ_LENGTH = 128
FORMATS = ("jsonl", "npy")
FEATURES_FILE = "features.jsonl"
EMBEDDINGS_FILE = "embeddings.npy"
INFO_FILE = "info.json"
ID_ARRAYS = ("input_ids", "token_type_ids", "attention_mask")
# The outputs of a chunk of lines stay under this many bytes on the host.
CHUNK_BYTES = 256 * 2**20
_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")  # the original's read_examples


def layer_file(index: int) -> str:
    return f"layer_{index}.npy"


# ----------------------------------------------------------------------------------------------
# Input: lines -> padded token ids.
# ----------------------------------------------------------------------------------------------
def count_lines(input_file: str | os.PathLike) -> int:
    path = Path(input_file)
    if not path.is_file():
        raise FileNotFoundError(f"--input_file={path} does not exist; pass a text file.")
    with path.open("rb") as f:
        n = sum(1 for _ in f)
    if n == 0:
        raise ValueError(f"--input_file={path} is empty; it needs one text per line.")
    return n


def read_chunks(input_file: str | os.PathLike, rows: int) -> Iterator[list[str]]:
    """The file's lines, stripped, ``rows`` at a time (bytes that are not UTF-8 replaced)."""
    with open(input_file, encoding="utf-8", errors="replace") as f:
        lines = (line.strip() for line in f)
        while chunk := list(itertools.islice(lines, rows)):
            yield chunk


def featurize(
    lines: Sequence[str], tokenizer: tokenizers.Tokenizer, max_seq_length: int
) -> tuple[dict[str, np.ndarray], list[int]]:
    """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` per line, padded to ``max_seq_length``;
    and the indices (in ``lines``) of the lines that were truncated."""
    arrays = {k: np.zeros((len(lines), max_seq_length), np.int32) for k in ID_ARRAYS}
    truncated = []
    for row, line in enumerate(lines):
        pair = _PAIR.match(line)
        a, b = (pair.group(1), pair.group(2)) if pair else (line, None)
        a_ids = tokenizer.encode(a)
        b_ids = None if b is None else tokenizer.encode(b)
        ids, type_ids = tokenizer.encode_pair(a_ids, b_ids, max_seq_length)
        if len(a_ids) + len(b_ids or []) + (2 if b is None else 3) > max_seq_length:
            truncated.append(row)
        arrays["input_ids"][row, : len(ids)] = ids
        arrays["token_type_ids"][row, : len(ids)] = type_ids
        arrays["attention_mask"][row, : len(ids)] = 1
    return arrays, truncated


# ----------------------------------------------------------------------------------------------
# Model: a checkpoint -> config, encoder parameters, tokenizer and its pooling.
# ----------------------------------------------------------------------------------------------
def _is_hf_directory(path: Path) -> bool:
    if (path / "modules.json").is_file():  # sentence-transformers
        return True
    config = path / "config.json"  # a bert_jax workdir has one too, without model_type
    if not config.is_file() or (path / pretrained.CONFIG_FILE).is_file():
        return False
    with config.open() as f:
        return "model_type" in json.load(f)


def load_model(
    checkpoint: str | os.PathLike,
) -> tuple[BertConfig, dict, tokenizers.Tokenizer, pretrained.Pooling | None]:
    """The model config, the encoder's parameters (host arrays), the tokenizer and the pooling
    (None unless the checkpoint is a sentence-embedding model) of ``checkpoint``."""
    path = Path(checkpoint)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--checkpoint={path} does not exist; pass a directory written by "
            "python -m bert_jax.convert, a bert_jax workdir or a Hugging Face directory."
        )
    if _is_hf_directory(path):
        model_config, params = interop.load_hf(path)
        tokenizer = interop.load_hf_tokenizer(path)
        pooling = interop.load_sentence_pooling(path)
    else:
        model_config, params, tokenizer_dir = checkpoints.load_init_checkpoint(str(path))
        tokenizer = tokenizers.load_tokenizer(tokenizer_dir)
        pooling = pretrained.load_pooling(path)
    bert = to_layer_layout(params, scan_layers=False)["bert"]
    return model_config, bert, tokenizer, pooling


def resolve_pooling(
    pooling: str | Sequence[str] | None,
    normalize: bool | None,
    checkpoint_pooling: pretrained.Pooling | None,
) -> pretrained.Pooling | None:
    """The pooling asked for (``"none"``: no embeddings), else the checkpoint's, else mean;
    ``normalize`` None keeps what that pooling says."""
    if isinstance(pooling, str):
        pooling = [m.strip() for m in pooling.split(",") if m.strip()]
    if pooling is not None and list(pooling) == ["none"]:
        return None
    base = checkpoint_pooling or pretrained.Pooling(("mean",))
    modes = base.modes if not pooling else tuple(pooling)
    if any(m not in pretrained.POOLING_MODES for m in modes):
        raise ValueError(
            f"--pooling={','.join(modes)}: use none, or one or more of "
            f"{','.join(pretrained.POOLING_MODES)} (in that order)."
        )
    return pretrained.Pooling(
        modes, base.normalize if normalize is None else normalize, base.max_seq_length
    )


def hidden_state_index(layer: int, num_layers: int) -> int:
    """The original's layer index (0 = first Transformer layer, -1 = last) -> the index into
    ``hidden_states`` (0 = the embeddings' output, as Hugging Face's)."""
    if not -num_layers <= layer < num_layers:
        raise ValueError(
            f"--layers: {layer} is not a layer of this {num_layers}-layer model; use 0 to "
            f"{num_layers - 1}, or -1 (the last) to {-num_layers}."
        )
    return layer + 1 if layer >= 0 else num_layers + 1 + layer


@dataclasses.dataclass(frozen=True)
class Features:
    """What the jitted function returns per row: ``hidden`` [length, layers, hidden] (the chosen
    layers' states) and ``embedding`` [dim]; the fine-tuning loop's ``predict`` calls it like a
    task family's outputs."""

    hidden_states: tuple[int, ...]  # indices into BertModel's hidden_states
    pooling: pretrained.Pooling | None

    def outputs(self, model: BertModel, params, batch) -> dict[str, jax.Array]:
        out = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            output_hidden_states=True,
        )
        result = {}
        if self.hidden_states:
            chosen = [out.hidden_states[i] for i in self.hidden_states]
            result["hidden"] = jnp.stack(chosen, axis=2).astype(jnp.float32)
        if self.pooling is not None:
            result["embedding"] = self.pooling(out.sequence_output, batch["attention_mask"])
        return result


# ----------------------------------------------------------------------------------------------
# Output: a new directory, written aside and moved into place.
# ----------------------------------------------------------------------------------------------
def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(
            f"--output={output} exists; extract_features never overwrites. Choose a new "
            f"--output, or delete {output} first."
        )


class Writer:
    """Writes the chunks of one run into ``directory`` (process 0 only; a no-op elsewhere)."""

    def __init__(
        self,
        directory: Path,
        output_format: str,
        layers: Sequence[int],
        lines: int,
        max_seq_length: int,
        hidden: int,
        embedding_dim: int | None,
    ):
        self.active = jax.process_index() == 0
        self.layers, self.files = tuple(layers), []
        self.jsonl = self.npy = self.embeddings = None
        if not self.active:
            return
        directory.mkdir(parents=True)

        def memmap(name, dtype, shape):
            self.files.append(name)
            return np.lib.format.open_memmap(directory / name, "w+", dtype, shape)

        if self.layers and output_format == "jsonl":
            self.files.append(FEATURES_FILE)
            self.jsonl = (directory / FEATURES_FILE).open("w", encoding="utf-8")
        elif output_format == "npy":
            shape = (lines, max_seq_length)
            self.npy = {k: memmap(k + ".npy", np.int32, shape) for k in ID_ARRAYS}
            for j in self.layers:
                self.npy[j] = memmap(layer_file(j), np.float32, (*shape, hidden))
        if embedding_dim is not None:
            self.embeddings = memmap(EMBEDDINGS_FILE, np.float32, (lines, embedding_dim))

    def write(
        self,
        start: int,
        arrays: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        tokenizer: tokenizers.Tokenizer,
    ) -> None:
        """Lines ``start, start + 1, ...``: their token ids and model outputs."""
        if not self.active:
            return
        rows = slice(start, start + len(arrays["input_ids"]))
        mask = arrays["attention_mask"]
        if self.embeddings is not None:
            self.embeddings[rows] = outputs["embedding"]
        if self.npy is not None:
            for k in ID_ARRAYS:
                self.npy[k][rows] = arrays[k]
            # Positions past the text are 0 (bucketed batches never computed them).
            for i, j in enumerate(self.layers):
                self.npy[j][rows] = np.where(mask[..., None] > 0, outputs["hidden"][:, :, i], 0)
        if self.jsonl is not None:
            for row, ids in enumerate(arrays["input_ids"]):
                self.jsonl.write(
                    self._json_line(start + row, ids[mask[row] > 0], outputs, row, tokenizer) + "\n"
                )

    def _json_line(self, index, ids, outputs, row, tokenizer) -> str:
        states = outputs["hidden"][row]  # [length, layers, hidden]
        features = [
            {
                "token": tokenizer.id_to_token(int(token_id)),
                "layers": [
                    {"index": j, "values": [round(v, 6) for v in states[t, i].tolist()]}
                    for i, j in enumerate(self.layers)
                ],
            }
            for t, token_id in enumerate(ids)
        ]
        return json.dumps({"linex_index": index, "features": features})

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        for array in [*(self.npy or {}).values(), self.embeddings]:
            if array is not None:
                array.flush()


class _LineProgress(Progress):
    """metrics.Progress counting lines instead of training steps."""

    def lines(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        sys.stderr.write(f"\r{done}/{self.total} lines  elapsed {elapsed:.0f} s  ETA {eta:.0f} s  ")
        sys.stderr.flush()


# ----------------------------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------------------------
def extract(
    checkpoint: str | os.PathLike,
    input_file: str | os.PathLike,
    output: str | os.PathLike,
    *,
    layers: Sequence[int] = DEFAULT_LAYERS,
    output_format: str = "jsonl",
    max_seq_length: int | None = None,
    batch_size: int = 32,
    pooling: str | Sequence[str] | None = None,
    normalize: bool | None = None,
    mesh_shape: Sequence[int] = (-1, 1, 1),
    dtype: str = "float32",
    chunk_rows: int | None = None,
) -> dict[str, Any]:
    """Writes the features and embeddings of every line of ``input_file`` into the new directory
    ``output`` (see the module docstring); returns what ``info.json`` holds.

    ``chunk_rows`` lines are tokenized, run and written at a time (a multiple of
    ``batch_size``; default: as many as keep the outputs under ``CHUNK_BYTES``).
    """
    # --- Paths: fail before any work.
    if output_format not in FORMATS:
        raise ValueError(f"--format={output_format}: use one of {FORMATS}.")
    output = Path(output)
    check_output(output)
    num_lines = count_lines(input_file)

    # --- Model, tokenizer, pooling, layers.
    model_config, params, tokenizer, checkpoint_pooling = load_model(checkpoint)
    pooling = resolve_pooling(pooling, normalize, checkpoint_pooling)
    layers = tuple(int(j) for j in layers)
    if not layers and pooling is None:
        raise ValueError("Nothing to write: --layers is empty and --pooling=none.")
    hidden_states = tuple(hidden_state_index(j, model_config.num_layers) for j in layers)
    if max_seq_length is None:
        max_seq_length = (pooling and pooling.max_seq_length) or DEFAULT_MAX_SEQ_LENGTH
    if max_seq_length > model_config.max_position_embeddings:
        raise ValueError(
            f"--max_seq_length={max_seq_length} is longer than the model's "
            f"{model_config.max_position_embeddings} positions."
        )
    # Inference: every position of every layer, in float32 unless asked otherwise.
    model_config = dataclasses.replace(
        model_config, dtype=dtype, scan_layers=False, remat="none", attention_impl=None
    )

    # --- Mesh and parameters, sharded by their logical axis names.
    mesh = make_mesh(tuple(mesh_shape))
    check_batch_size("batch_size", batch_size, mesh)
    model = BertModel(model_config)
    dummy = jnp.zeros((1, max_seq_length), jnp.int32)
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy)["params"])
    params = jax.device_put(params, logical_shardings(abstract, mesh, DEFAULT_RULES))
    features = Features(hidden_states, pooling)
    predict_fn = make_predict_fn(features, model, mesh, DEFAULT_RULES)
    lengths = buckets.bucket_lengths((), max_seq_length)

    # --- Output, written aside.
    hidden = model_config.hidden_size
    embedding_dim = None if pooling is None else hidden * len(pooling.modes)
    staging = output.with_name(output.name + ".incomplete")
    if jax.process_index() == 0:
        shutil.rmtree(staging, ignore_errors=True)
    writer = Writer(
        staging, output_format, layers, num_lines, max_seq_length, hidden, embedding_dim
    )
    if chunk_rows is None:
        row_bytes = 4 * (max_seq_length * len(layers) * hidden + (embedding_dim or 0))
        chunk_rows = max(1, CHUNK_BYTES // (row_bytes * batch_size)) * batch_size

    # --- Loop: a chunk of lines at a time.
    logging.info(
        "Extracting %d lines of %s: layers %s, pooling %s, %d devices.",
        num_lines,
        input_file,
        layers,
        pooling,
        mesh.size,
    )
    progress = _LineProgress(num_lines, 0)
    started, done = time.monotonic(), 0
    truncated, first_truncated = 0, None
    try:
        for lines in read_chunks(input_file, chunk_rows):
            arrays, cut = featurize(lines, tokenizer, max_seq_length)
            if cut and first_truncated is None:
                first_truncated = done + cut[0]
            truncated += len(cut)
            outputs = predict(predict_fn, params, arrays, batch_size, mesh, lengths, ("hidden",))
            writer.write(done, arrays, outputs, tokenizer)
            done += len(lines)
            progress.lines(done)
    finally:
        writer.close()
    if done != num_lines:
        raise RuntimeError(f"{input_file} changed while it was read: {done} of {num_lines} lines.")
    if truncated:
        logging.info(
            "%d of %d lines were longer than max_seq_length=%d tokens and were "
            "truncated (the first: line %d).",
            truncated,
            num_lines,
            max_seq_length,
            first_truncated,
        )
    seconds = time.monotonic() - started

    # --- info.json, and the directory moved into place.
    info = {
        "checkpoint": str(checkpoint),
        "input_file": str(input_file),
        "lines": num_lines,
        "layers": list(layers),
        "format": output_format,
        "files": writer.files,
        "max_seq_length": max_seq_length,
        "pooling": None if pooling is None else {**vars(pooling), "modes": list(pooling.modes)},
        "truncated_lines": truncated,
    }
    if jax.process_index() == 0:
        with (staging / INFO_FILE).open("w") as f:
            json.dump(info, f, indent=2)
        if output.is_dir():  # an empty directory the user made
            output.rmdir()
        os.replace(staging, output)
        logging.info("Wrote %s (%.1f lines/s).", output, num_lines / max(seconds, 1e-9))
    return info


# ----------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "bert_jax pretrained directory or workdir, or a Hugging Face directory."
)
_INPUT_FILE = flags.DEFINE_string("input_file", None, "One text (or 'a ||| b') per line.")
_OUTPUT = flags.DEFINE_string("output", None, "A new directory for the outputs.")
_LAYERS = flags.DEFINE_list(
    "layers", [str(j) for j in DEFAULT_LAYERS], "Layers: 0 = first, -1 = last; empty: none."
)
_FORMAT = flags.DEFINE_enum("format", "jsonl", FORMATS, "Per-token features as JSON or .npy.")
_MAX_SEQ_LENGTH = flags.DEFINE_integer(
    "max_seq_length", None, "Tokens per text (default: the pooling's, else 128)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Global batch size.")
_POOLING = flags.DEFINE_string(
    "pooling",
    None,
    "cls, mean, max (comma-separated to concatenate) or none; default: the "
    "checkpoint's sentence-transformers pooling, else mean.",
)
_NORMALIZE = flags.DEFINE_bool("normalize", None, "L2-normalise the embeddings.")
_MESH_SHAPE = flags.DEFINE_list("mesh_shape", ["-1", "1", "1"], "Devices over data,fsdp,tensor.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    show_own_info_only()
    start_distributed()
    try:
        layers = [int(j) for j in _LAYERS.value]
        mesh_shape = [int(d) for d in _MESH_SHAPE.value]
    except ValueError as e:
        raise app.UsageError(f"--layers and --mesh_shape take integers: {e}") from e
    extract(
        _CHECKPOINT.value,
        _INPUT_FILE.value,
        _OUTPUT.value,
        layers=layers,
        output_format=_FORMAT.value,
        max_seq_length=_MAX_SEQ_LENGTH.value,
        batch_size=_BATCH_SIZE.value,
        pooling=_POOLING.value,
        normalize=_NORMALIZE.value,
        mesh_shape=mesh_shape,
        dtype=_DTYPE.value,
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["checkpoint", "input_file", "output"])
    app.run(main)
