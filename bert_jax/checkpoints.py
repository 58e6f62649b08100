"""Checkpoints of a run: train state + input-pipeline state, async, the last K kept.

A workdir holds ``config.json`` (the resolved config it started with) and ``checkpoints/<step>``.
Running the same command again resumes from the last committed checkpoint; a workdir whose run
used an incompatible config is refused instead of being silently mixed with the new one.

Usage::

    ckpt = Checkpointer(workdir, max_to_keep=3)
    if ckpt.latest_step():
        state = ckpt.restore(ckpt.latest_step(), abstract_state, data_iterator)
    ckpt.save(step, state, data_iterator)
    ckpt.close()

    # Any of: a converted checkpoint, a pretraining workdir, a fine-tuning workdir.
    model_config, params, tokenizer_dir = load_init_checkpoint(path)
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain.checkpoint
import jax
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from bert_jax import pretrained
from bert_jax.models.bert import BertConfig, to_layer_layout

TOKENIZER_DIR = "tokenizer"  # every run keeps the tokenizer it used in WORKDIR/tokenizer
BEST_DIR = "best"  # fine-tuning keeps its best parameters there, in the converted format

# Fields that may change between a run and its resumption: how often to log, save and evaluate.
RESUMABLE_CHANGES = (
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "max_checkpoints_to_keep",
    "init_checkpoint",
    "data.eval_batches",
)


def _resumable_changes(config: dict[str, Any]) -> tuple[str, ...]:
    """``total_steps`` may grow or shrink only where nothing depends on it: a constant learning
    rate and no second phase (the decay and the phase-2 boundary are fractions of it)."""
    constant = config.get("schedule") == "constant"
    one_phase = not config.get("data", {}).get("phase2_fraction")
    return RESUMABLE_CHANGES + (("total_steps",) if constant and one_phase else ())


def config_to_dict(config: mlc.ConfigDict) -> dict[str, Any]:
    """A JSON-compatible view of a config (tuples become lists)."""
    return json.loads(config.to_json())


def check_compatible_workdir(workdir: str, config: mlc.ConfigDict) -> None:
    """Writes ``config.json`` on the first run; later runs must agree with it.

    Raises:
      ValueError: naming every field that differs, when the workdir holds another run.
    """
    path = os.path.join(workdir, "config.json")
    new = config_to_dict(config)
    if not os.path.exists(path):
        if jax.process_index() == 0:
            os.makedirs(workdir, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump(new, f, indent=2, sort_keys=True)
            os.replace(path + ".tmp", path)
        return
    with open(path) as f:
        old = json.load(f)
    old_flat = traverse_util.flatten_dict(old, sep=".")
    new_flat = traverse_util.flatten_dict(new, sep=".")
    differing = sorted(
        k
        for k in set(old_flat) | set(new_flat)
        if old_flat.get(k) != new_flat.get(k) and k not in _resumable_changes(new)
    )
    if differing:
        changes = ", ".join(f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in differing)
        raise ValueError(
            f"{workdir} holds a run with a different config ({changes}). Resume it with the same "
            "config, or start this experiment in a new --workdir. (total_steps may change only "
            "with a constant schedule and no phase 2: the decay and phase boundary depend on it.)"
        )


def write_results(workdir: str, results: dict[str, Any]) -> None:
    """``WORKDIR/results.json``: the final metrics of a finished run (sweeps look for it)."""
    if jax.process_index() == 0:
        path = os.path.join(workdir, "results.json")
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)


def read_results(workdir: str) -> dict[str, Any] | None:
    """The ``results.json`` of a finished run, or None."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def keep_tokenizer(tokenizer, workdir: str) -> None:
    """Saves the run's tokenizer in ``WORKDIR/tokenizer`` (once, on process 0): fine-tuning and
    ``init_checkpoint`` find it there."""
    path = os.path.join(workdir, TOKENIZER_DIR)
    if jax.process_index() == 0 and not os.path.exists(path):
        tokenizer.save(path)


# Fields that change how a model runs, not what it computes: free to differ from a checkpoint's.
RUNTIME_FIELDS = (
    "hidden_dropout",
    "attention_dropout",
    "dtype",
    "param_dtype",
    "attention_impl",
    "scan_layers",
    "remat",
    "sparse_mlm_head",
    "prune_last_layer",
)


def check_same_model(loaded: BertConfig, wanted: BertConfig, source: str) -> None:
    """Refuses an initial checkpoint whose architecture differs from the config's (a different
    activation, say, has the same shapes and would pass unnoticed)."""
    differing = {
        k: (v, getattr(wanted, k))
        for k, v in loaded.to_dict().items()
        if k not in RUNTIME_FIELDS and v != getattr(wanted, k)
    }
    if differing:
        changes = ", ".join(
            f"{k}: {a!r} in the checkpoint, {b!r} in the config" for k, (a, b) in differing.items()
        )
        raise ValueError(
            f"init_checkpoint {source} is another model ({changes}); set --config.model.FIELD "
            "to the checkpoint's values."
        )


def check_same_tokenizer(checkpoint_dir: str, tokenizer, source: str) -> None:
    """Refuses an initial checkpoint whose vocabulary is not the data's (same size, other ids)."""
    if not os.path.exists(os.path.join(checkpoint_dir, "tokenizer.json")):
        return  # a checkpoint converted without its vocabulary: nothing to compare
    from bert_jax.tokenizers import load_tokenizer

    theirs = load_tokenizer(checkpoint_dir)
    same = theirs.vocab_size == tokenizer.vocab_size and all(
        theirs.id_to_token(i) == tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)
    )
    if not same:
        raise ValueError(
            f"init_checkpoint {source} was trained with another vocabulary than the data's "
            f"tokenizer; prepare the data with its own (prepare --vocab_dir={checkpoint_dir})."
        )


class _Snapshot:
    """The input-pipeline state at save time: async saves must not see the iterator move on."""

    def __init__(self, iterator):
        state = iterator.get_state()
        # grain's handler writes the bytes of non-dataset iterators as they are: give it the JSON
        # that it would have written for the live iterator, which restores into one.
        self._state = state if isinstance(state, bytes) else json.dumps(state, indent=4).encode()

    def get_state(self) -> bytes:
        return self._state


class Checkpointer:
    """orbax CheckpointManager over ``WORKDIR/checkpoints`` with state and data-iterator items."""

    def __init__(self, workdir: str, max_to_keep: int, async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator=None, force: bool = False) -> bool:
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(_Snapshot(data_iterator))
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restores the state onto the shardings of ``abstract_state``; the iterator in place."""
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            raise RuntimeError(
                f"Checkpoint {self.directory}/{step} could not be restored ({type(e).__name__}: "
                f"{e}). Delete that step's folder to resume from the one before it."
            ) from e
        logging.info("Restored step %d from %s", step, self.directory)
        return restored["state"]

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def load_init_checkpoint(path: str) -> tuple[BertConfig, dict, str]:
    """The model config, parameters (host arrays) and tokenizer directory of an initial checkpoint.

    ``path`` is a converted checkpoint (``python -m bert_jax.convert``), a pretraining workdir
    (its latest checkpoint) or a fine-tuning workdir (its best parameters).
    """
    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, pretrained.CONFIG_FILE)):
        model_config, params = pretrained.load(path)
        return model_config, params, os.path.join(path, pretrained.TOKENIZER_DIR)
    if os.path.isdir(os.path.join(path, BEST_DIR)):
        model_config, params = pretrained.load(os.path.join(path, BEST_DIR))
        return model_config, params, os.path.join(path, TOKENIZER_DIR)
    config_file = os.path.join(path, "config.json")
    if os.path.exists(config_file):
        with open(config_file) as f:
            if json.load(f).get("experiment") != "pretrain":
                raise FileNotFoundError(
                    f"init_checkpoint {path} is a fine-tuning workdir without best/ parameters "
                    "yet; let its run evaluate once, or start from its pretrained checkpoint."
                )
    step = Checkpointer(path, max_to_keep=1).latest_step() if os.path.exists(config_file) else None
    if step is None:
        raise FileNotFoundError(
            f"init_checkpoint {path} is neither a converted checkpoint (model_config.json, "
            "params/: see `python -m bert_jax.convert`) nor a workdir with a committed checkpoint."
        )
    with open(config_file) as f:
        model_config = BertConfig.from_dict(json.load(f)["model"])
    state_dir = os.path.join(path, "checkpoints", str(step), "state")
    logging.info("Initialising from %s (step %d)", path, step)
    return model_config, _restore_params_only(state_dir), os.path.join(path, TOKENIZER_DIR)


def _restore_params_only(state_dir: str) -> dict:
    """The parameters of a saved train state, as host arrays: no optimizer moments are read, and
    nothing depends on the topology the checkpoint was written on."""
    return pretrained.restore_host_arrays(state_dir, "params")["params"]


def merge_params(loaded: dict, fresh: dict, what: str) -> dict:
    """``loaded`` where it has a parameter, ``fresh`` elsewhere; shapes must agree.

    ``loaded`` may have either layer layout (one subtree per layer, or stacked for scan_layers).
    """
    loaded = to_layer_layout(loaded, scan_layers="layers" in fresh["bert"])

    def merge(path, fresh_leaf):
        node = loaded
        for key in path:
            node = node.get(key.key) if isinstance(node, dict) else None
            if node is None:
                missing.append("/".join(k.key for k in path))
                return fresh_leaf
        if tuple(node.shape) != tuple(fresh_leaf.shape):
            raise ValueError(
                f"{what}: parameter {'/'.join(k.key for k in path)} has shape {node.shape} but "
                f"the model expects {fresh_leaf.shape}: the checkpoint is of another architecture."
            )
        return np.asarray(node).astype(fresh_leaf.dtype)  # e.g. fp32 weights, bf16 param_dtype

    missing: list[str] = []
    merged = jax.tree_util.tree_map_with_path(merge, fresh)
    if missing:
        logging.info("%s lacks %d parameters, initialised fresh: %s", what, len(missing), missing)
    return merged
