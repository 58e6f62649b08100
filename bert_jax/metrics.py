"""What a researcher watches: metric writers (JSONL + TensorBoard), FLOPs and MFU, progress.

Usage::

    writer = MetricWriter(workdir)           # writes on process 0 only
    writer.write(step, {"loss": 2.3})        # -> WORKDIR/metrics.jsonl and TensorBoard events
    flops = training_flops_per_token(cfg, seq_len=128, predictions_per_token=20 / 128)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping

import jax

from bert_jax.models.bert import BertConfig

# Dense bf16 peak FLOP/s per chip, by jax.Device.device_kind prefix (datasheet values).
PEAK_FLOPS = {
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
    """The chip's dense bf16 peak, or None where it is not known (CPUs)."""
    kind = (device or jax.devices()[0]).device_kind
    return next((v for k, v in PEAK_FLOPS.items() if kind.startswith(k)), None)


def training_flops_per_token(cfg: BertConfig, seq_len: int, predictions_per_token: float) -> float:
    """Training FLOPs per real token (3x forward; a multiply-add is 2 FLOPs).

    Encoder matmuls 72*L*H^2, attention scores and values 12*L*H*S (S = the length a token attends
    over), MLM head 6*H*(H+V) per prediction.
    """
    L, H, V = cfg.num_layers, cfg.hidden_size, cfg.vocab_size
    return 72 * L * H**2 + 12 * L * H * seq_len + predictions_per_token * 6 * H * (H + V)


class MetricWriter:
    """Appends one JSON object per call to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    Only process 0 writes; on other processes every call is a no-op.
    """

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.active:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for k, v in record.items():
            if k != "step" and math.isfinite(v):
                self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def close(self) -> None:
        if self.active:
            self._jsonl.close()
            self._tb.close()


class Progress:
    """A one-line progress display with ETA, shown only on interactive terminals of process 0."""

    def __init__(self, total_steps: int, first_step: int):
        self.total, self.first = total_steps, first_step
        self.start = time.monotonic()
        self.enabled = sys.stderr.isatty() and jax.process_index() == 0

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        done = step - self.first
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(done, 1) * (self.total - step)
        sys.stderr.write(
            f"\rstep {step}/{self.total}  loss {loss:.4f}  "
            f"elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min   "
        )
        sys.stderr.flush()
