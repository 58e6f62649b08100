"""The on-disk format of a converted (or exported) bert_jax model.

A directory holds::

    model_config.json   # BertConfig.to_dict()
    params/             # the parameter tree, an orbax StandardCheckpointer checkpoint
    tokenizer/          # optional: written by bert_jax.tokenizers.Tokenizer.save
    pooling.json        # optional: how a sentence-embedding model pools (see Pooling)

Usage::

    from bert_jax import pretrained
    pretrained.save("ckpt/bert-base", cfg, params, tokenizer_dir="run/tokenizer")
    cfg, params = pretrained.load("ckpt/bert-base")                    # numpy arrays
    cfg, params = pretrained.load("ckpt/bert-base", shardings=shards)  # jax.Arrays, in place
    tok = bert_jax.tokenizers.load_tokenizer("ckpt/bert-base/tokenizer")
    pooling = pretrained.load_pooling("ckpt/all-MiniLM-L6-v2")  # None unless the model has one
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from bert_jax import tokenizers
from bert_jax.models.bert import BertConfig

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
TOKENIZER_DIR = "tokenizer"
POOLING_FILE = "pooling.json"

# sentence-transformers concatenates the pooled vectors of several modes in this order.
POOLING_MODES = ("cls", "max", "mean")


@dataclasses.dataclass(frozen=True)
class Pooling:
    """How a sentence-embedding model (sentence-transformers) makes one vector of a text.

    ``modes``: a subset of :data:`POOLING_MODES`, in that order: the [CLS] state, the maximum or
    the mean over the real (unmasked) tokens' final states, concatenated; ``normalize``: L2
    normalisation afterwards (sentence-transformers' ``Normalize`` module); ``max_seq_length``:
    the length it truncates texts to (None: the model's maximum).

    >>> pooling = pretrained.load_pooling("ckpt/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> out = BertModel(cfg).apply({"params": params["bert"]}, ids, types, mask)  # doctest: +SKIP
    >>> embeddings = pooling(out.sequence_output, mask)  # [batch, hidden]  # doctest: +SKIP
    """

    modes: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_seq_length: int | None = None

    def __post_init__(self):
        modes = tuple(self.modes)
        if not modes or modes != tuple(m for m in POOLING_MODES if m in modes):
            raise ValueError(
                f"Pooling modes {modes!r}: use one or more of {POOLING_MODES}, in that order."
            )
        object.__setattr__(self, "modes", modes)

    def __call__(self, sequence_output: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """``[batch, length, hidden]`` states and ``[batch, length]`` mask -> embeddings."""
        x = jnp.asarray(sequence_output, jnp.float32)
        mask = jnp.asarray(attention_mask, jnp.float32)[..., None]
        pooled = []
        for mode in self.modes:
            if mode == "cls":
                pooled.append(x[:, 0])
            elif mode == "max":  # padding gets sentence-transformers' -1e9, never the maximum
                pooled.append(jnp.max(jnp.where(mask > 0, x, -1e9), axis=1))
            else:
                pooled.append(jnp.sum(x * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1e-9))
        out = jnp.concatenate(pooled, axis=-1)
        if self.normalize:  # as torch.nn.functional.normalize
            out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        return out


def load_pooling(directory: str | os.PathLike) -> Pooling | None:
    """The :class:`Pooling` kept in ``directory`` (written by :func:`save`), or None.

    >>> load_pooling("ckpt/all-MiniLM-L6-v2")  # doctest: +SKIP
    Pooling(modes=('mean',), normalize=True, max_seq_length=256)
    """
    path = Path(directory) / POOLING_FILE
    if not path.is_file():
        return None
    try:
        with path.open() as f:
            d = json.load(f)
        return Pooling(tuple(d["modes"]), bool(d["normalize"]), d.get("max_seq_length"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path} is not a valid pooling file ({e}); expected "
            '{"modes": ["mean"], "normalize": true, "max_seq_length": 256}.'
        ) from e


def save(
    directory: str | os.PathLike,
    model_config: BertConfig,
    params: Any,
    tokenizer_dir: str | os.PathLike | None = None,
    *,
    pooling: Pooling | None = None,
) -> None:
    """Writes the config, the parameters and (optionally) the tokenizer into a new ``directory``.

    ``tokenizer_dir`` is a directory written by ``Tokenizer.save`` (its ``tokenizer.json`` and the
    vocabulary file it names are copied); ``pooling`` (a sentence-embedding model's) is kept in
    ``pooling.json``. Refuses to write into a non-empty directory.

    >>> save("ckpt/bert-tiny", cfg, params, tokenizer_dir="run/tokenizer")  # doctest: +SKIP
    """
    directory = Path(directory).absolute()  # orbax wants absolute paths
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(
            f"{directory} exists and is not empty; choose a new directory or delete it first."
        )
    # Load the tokenizer before writing anything, so a bad tokenizer_dir leaves no half directory.
    tokenizer = None if tokenizer_dir is None else tokenizers.load_tokenizer(str(tokenizer_dir))
    # With several processes every one calls this: all check first, the params are saved together
    # (each process writes its shards), and process 0 writes the small files.
    multihost_utils.sync_global_devices(f"pretrained.save checked {directory}")
    if jax.process_index() == 0:
        directory.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / PARAMS_DIR, nn.unbox(params))
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        with (directory / CONFIG_FILE).open("w") as f:
            json.dump(model_config.to_dict(), f, indent=2)
        if tokenizer is not None:
            tokenizer.save(str(directory / TOKENIZER_DIR))
        if pooling is not None:
            with (directory / POOLING_FILE).open("w") as f:
                json.dump(dataclasses.asdict(pooling), f, indent=2)
    multihost_utils.sync_global_devices(f"pretrained.save done {directory}")


def restore_host_arrays(directory: str | os.PathLike, subtree: str | None = None) -> dict:
    """The pytree of an orbax checkpoint directory (or only its top-level ``subtree``) as numpy
    arrays on this host, whatever topology (devices, processes) wrote it.

    >>> restore_host_arrays("run/checkpoints/1000/state", "params")["params"]  # doctest: +SKIP
    """
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(directory).item_metadata
    if metadata is None:  # e.g. an empty or half-copied directory
        raise FileNotFoundError(f"{directory} holds no orbax checkpoint (no metadata).")
    tree = metadata.tree
    if subtree is not None:
        tree = {subtree: tree[subtree]}
    item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restore = ocp.args.PyTreeRestore(
        item=item, restore_args=as_numpy, partial_restore=subtree is not None
    )
    return checkpointer.restore(directory, args=restore)


def load(directory: str | os.PathLike, shardings: Any = None) -> tuple[BertConfig, dict[str, Any]]:
    """Reads a directory written by :func:`save`.

    Without ``shardings`` the parameters come back as numpy arrays. With ``shardings`` (a pytree of
    ``jax.sharding.Sharding`` matching the parameter tree) every array is restored directly into
    its target sharding, so nothing large passes through a single device.

    >>> cfg, params = load("ckpt/bert-tiny")  # doctest: +SKIP
    """
    directory = Path(directory).absolute()
    config_file, params_dir = directory / CONFIG_FILE, directory / PARAMS_DIR
    if not config_file.is_file() or not params_dir.is_dir():
        raise FileNotFoundError(
            f"{directory} is not a bert_jax pretrained directory: expected {CONFIG_FILE} and "
            f"{PARAMS_DIR}/ (written by bert_jax.pretrained.save or python -m bert_jax.convert)."
        )
    try:
        with config_file.open() as f:
            model_config = BertConfig.from_dict(json.load(f))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{config_file} is not a valid BertConfig: {e}") from e

    try:
        if shardings is None:
            params = restore_host_arrays(params_dir)
        else:
            checkpointer = ocp.StandardCheckpointer()
            stored = checkpointer.metadata(params_dir).item_metadata.tree
            target = jax.tree.map(
                lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s), stored, shardings
            )
            params = checkpointer.restore(params_dir, target)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"Cannot restore the parameters in {params_dir}: {e}") from e
    return model_config, params
