r"""The entry point: flags, distributed start-up, dispatch by the config's experiment.

  python -m bert_jax.main --config=configs/pretrain.py:model=tiny --workdir=/tmp/bert_tiny

On several hosts run the same command on every host. TPU pod slices and SLURM jobs are detected
automatically; elsewhere pass --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

from __future__ import annotations

import logging
import os
import sys

import jax
import ml_collections
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and logs go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def _cluster_detected() -> bool:
    """True on the multi-process clusters where jax.distributed finds its peers by itself."""
    tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in tpu_hosts or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def show_own_info_only() -> None:
    """INFO lines from bert_jax; from the libraries only warnings and errors (orbax alone logs a
    dozen INFO lines per checkpoint)."""
    own = f"{os.sep}bert_jax{os.sep}"
    absl_logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= logging.WARNING or own in record.pathname
    )


def start_distributed() -> None:
    if _COORDINATOR.value or _NUM_PROCESSES.value:
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )
    elif _cluster_detected():
        jax.distributed.initialize()


def check_paths(config: ml_collections.ConfigDict, workdir: str) -> None:
    """bert_jax reads and writes files (array_record reads local files): a gs:// path fails here,
    before any work, with the way to mount it."""
    paths = {"--workdir": workdir, "init_checkpoint": config.get("init_checkpoint")}
    paths["data_dir"] = config.get("data_dir") or config.get("data", {}).get("data_dir")
    for name, path in paths.items():
        if path and "://" in path:
            raise app.UsageError(
                f"{name}={path}: bert_jax reads and writes files, not URLs. Mount the bucket with "
                "gcsfuse (launch/tpu_vm.sh does, and translates gs:// paths) and pass the mounted "
                "path, e.g. "
                f"{path.replace('gs://', '/gcs/')}."
            )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    show_own_info_only()
    config = _CONFIG.value
    check_paths(config, _WORKDIR.value)
    start_distributed()
    logging.info(
        "Process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
    )
    if config.experiment == "pretrain":
        from bert_jax.pretrain import train_and_evaluate
    elif config.experiment == "finetune":
        from bert_jax.finetune import train_and_evaluate
    else:
        sys.exit(
            f"Unknown config.experiment {config.experiment!r}: expected 'pretrain' or 'finetune'."
        )
    train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
