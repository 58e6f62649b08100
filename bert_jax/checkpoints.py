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

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from typing import Any

import grain.checkpoint
import jax
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from bert_jax import faults, pretrained
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
    "allow_data_change",
    "keep_going_on_save_error",
    "data.verify_checksums",
)


# Fields added to the configs after runs were made without them, each with the value that does
# what those runs did: a config.json that lacks one reads as having that value, so older runs
# still resume (and a new default that computes something else is named as a difference).
ADDED_FIELDS = {
    "objective": "mlm",
    "model.causal": False,
    "bucket_by_length": False,
    "length_buckets": [],
    "pack_examples": False,
    "examples_per_row": 16,
    "pack_if_token_ratio_below": 0.9,
}


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
    for key, value in ADDED_FIELDS.items():
        if key in new_flat:
            old_flat.setdefault(key, value)
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


class SaveError(RuntimeError):
    """A checkpoint could not be written (a full disk, a failing filesystem)."""


def _disk_full(error: BaseException | None) -> bool:
    """ENOSPC or EDQUOT, as an OSError or in tensorstore's message, anywhere in the chain."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def _megabytes(n: float) -> str:
    return f"{n / 1e6:,.1f} MB ({int(n):,} bytes)"


class Checkpointer:
    """orbax CheckpointManager over ``WORKDIR/checkpoints`` with state and data-iterator items,
    and the fingerprint of the data the run reads (``bert_jax.faults``).

    A save that fails (now, or in the background: reported at the next save or at ``close``)
    raises :class:`SaveError` naming the directory, the bytes a checkpoint needs and the last
    committed step, which stays restorable; with ``keep_going_on_save_error`` it is logged and the
    next save tries again.
    """

    def __init__(
        self,
        workdir: str,
        max_to_keep: int,
        async_save: bool = True,
        keep_going_on_save_error: bool = False,
        data_fingerprint: dict | None = None,
    ):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.keep_going_on_save_error = keep_going_on_save_error
        self.data_fingerprint = data_fingerprint
        # Leftovers of saves that never committed (a kill, a full disk) are removed: the run
        # holds the workdir (bert_jax.faults.hold_workdir), so none of them is in flight.
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=self._options)
        self._in_flight: int | None = None  # the step of a save not known to be committed
        self._bytes = 0  # what a checkpoint of the train state takes

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator=None, force: bool = False) -> bool:
        self._finish_in_flight()
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(_Snapshot(data_iterator))
        if self.data_fingerprint is not None:
            items["data_fingerprint"] = ocp.args.JsonSave(self.data_fingerprint)
        self._bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
        try:
            saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        except Exception as e:
            self._save_failed(step, e)
            return False
        self._in_flight = step
        return saved

    def _finish_in_flight(self) -> None:
        step, self._in_flight = self._in_flight, None
        if step is not None:
            try:
                self.manager.wait_until_finished()
            except Exception as e:
                self._save_failed(step, e)

    def _save_failed(self, step: int, error: Exception) -> None:
        first_line = (str(error).strip().splitlines() or ["?"])[0][:300]
        cause = "no space left on device" if _disk_full(error) else f"{type(error).__name__}: "
        cause += "" if _disk_full(error) else first_line
        try:
            free = f" and {_megabytes(shutil.disk_usage(self.directory).free)} are free there"
        except OSError:
            free = ""
        last = self.manager.latest_step()  # orbax has forgotten the failed step
        kept = (
            f"The last committed checkpoint, {self.directory}/{last}, is intact"
            if last is not None
            else "No checkpoint was committed before it"
        )
        message = (
            f"Checkpoint step {step} could not be saved in {self.directory} ({cause}). A "
            f"checkpoint of this run needs about {_megabytes(self._bytes)}{free}. {kept}."
        )
        if not self.keep_going_on_save_error:
            raise SaveError(
                f"{message} Free space there (or lower --config.max_checkpoints_to_keep) and "
                "re-run the same command to resume from it. The run stops rather than train on "
                "without checkpoints; --config.keep_going_on_save_error=True trains on and tries "
                "again at every checkpoint step."
            ) from error
        logging.error("%s Training goes on (keep_going_on_save_error) and saves again at the "
                      "next checkpoint step.", message)  # fmt: skip
        with contextlib.suppress(Exception):  # the old manager keeps re-raising the failure
            self.manager.close()
        self.manager = ocp.CheckpointManager(self.directory, options=self._options)

    def committed(self) -> str:
        """Where a run that stops now resumes from: for error messages."""
        with contextlib.suppress(SaveError):
            self._finish_in_flight()
        last = self.manager.latest_step()
        if last is None:
            return "No checkpoint is committed yet: re-running starts from the beginning."
        return (
            f"The last committed checkpoint, {self.directory}/{last}, is intact: re-run the same "
            "command to resume from it."
        )

    def check_same_data(self, step: int | None, allow_change: bool) -> None:
        """Refuses to resume from ``step`` on other data than its checkpoint was reading, unless
        ``allow_change`` (then the change is logged and recorded in WORKDIR/data_changes.jsonl).

        Raises:
          faults.DataError: listing what differs, with the way out.
        """
        if not step or self.data_fingerprint is None:
            return
        try:
            restore = ocp.args.Composite(data_fingerprint=ocp.args.JsonRestore())
            recorded = self.manager.restore(step, args=restore)["data_fingerprint"]
        except KeyError:
            logging.info("Checkpoint %d records no data fingerprint: not compared.", step)
            return
        changes = faults.data_changes(recorded, self.data_fingerprint)
        if not changes:
            return
        listed = "; ".join(changes[:8]) + (f"; {len(changes) - 8} more" if changes[8:] else "")
        workdir = os.path.dirname(self.directory)
        if not allow_change:
            raise faults.DataError(
                f"{self.directory}/{step} was reading other data than this run would: {listed}. "
                "Resume on the data it was reading (put it back), or, to go on with this data on "
                "purpose, re-run with --config.allow_data_change=True (recorded in "
                f"{workdir}/data_changes.jsonl)."
            )
        logging.warning("Resuming step %d on changed data (allow_data_change): %s", step, listed)
        if jax.process_index() == 0:
            with open(os.path.join(workdir, "data_changes.jsonl"), "a") as f:
                record = {"step": step, "time": time.time(), "changes": changes}
                f.write(json.dumps(record) + "\n")

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
        """Waits for the save in flight; raises :class:`SaveError` if it failed."""
        try:
            self._finish_in_flight()
        finally:
            with contextlib.suppress(Exception):  # after a failed save, it re-raises the failure
                self.manager.close()


def latest_committed_step(workdir: str) -> int | None:
    """The last committed step of another run's workdir, read without touching anything."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    options = ocp.CheckpointManagerOptions(read_only=True)
    return ocp.CheckpointManager(directory, options=options).latest_step()


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
    step = latest_committed_step(path) if os.path.exists(config_file) else None
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
