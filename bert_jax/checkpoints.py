"""Checkpoints of a run: train state + input-pipeline state, async, the last K kept.

A workdir holds ``config.json`` (the resolved config it was started with) and ``checkpoints/<step>``.
Running the same command again resumes from the last committed checkpoint; a workdir whose run used
an incompatible config is refused instead of being silently mixed with the new one.

Usage::

    ckpt = Checkpointer(workdir, config)
    state = ckpt.restore_or(state, abstract, data_iterator)  # resumes when a checkpoint exists
    ckpt.save(step, state, data_iterator)
    ckpt.close()
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain.checkpoint
import jax
import ml_collections as mlc
import orbax.checkpoint as ocp

# Fields that may change between a run and its resumption (how long, how often to log/save/eval).
RESUMABLE_CHANGES = (
    "total_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "max_checkpoints_to_keep",
    "init_checkpoint",
    "data.eval_batches",
)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
    old_flat, new_flat = _flatten(old), _flatten(new)
    differing = sorted(
        k
        for k in set(old_flat) | set(new_flat)
        if old_flat.get(k) != new_flat.get(k) and k not in RESUMABLE_CHANGES
    )
    if differing:
        changes = ", ".join(f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in differing)
        raise ValueError(
            f"{workdir} holds a run with a different config ({changes}). Resume it with the same "
            "config, or start this experiment in a new --workdir."
        )


class _Snapshot:
    """The input-pipeline state at save time: async saves must not see the iterator move on."""

    def __init__(self, iterator):
        self._state = iterator.get_state()

    def get_state(self):
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
        """Restores the state onto the shardings of ``abstract_state``, and the iterator in place."""
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

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
