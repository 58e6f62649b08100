"""End-to-end fine-tuning test helpers: a random tiny initial checkpoint, and bert_jax.main run
in a subprocess on two fake devices.

Usage (in a module-scoped fixture, so that a test module builds one checkpoint)::

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("init"), texts)
    run_main("configs/swag.py:model=tiny", workdir, f"--config.init_checkpoint={checkpoint}")
"""

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterable

import jax
import numpy as np

from bert_jax import pretrained
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.tokenizers import train_sentencepiece

ROOT = pathlib.Path(__file__).parent.parent


def tiny_checkpoint(root: pathlib.Path, texts: Iterable[str], max_positions: int = 32) -> str:
    """``root/ckpt``: a random tiny BERT with a 128-piece SentencePiece vocabulary of ``texts``
    (no pretraining: end-to-end tests check the plumbing, not what is learned)."""
    tokenizer = train_sentencepiece(texts, str(root / "spm"), vocab_size=128)
    tokenizer.save(str(root / "tokenizer"))
    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=max_positions)
    params = BertForPreTraining(cfg).init(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    pretrained.save(root / "ckpt", cfg, jax.device_get(params), root / "tokenizer")
    return str(root / "ckpt")


def run_main(config: str, workdir: str | os.PathLike, *overrides: str) -> None:
    """``python -m bert_jax.main --config=CONFIG --workdir=WORKDIR OVERRIDES...``; fails the test
    with the end of its stderr unless it succeeds."""
    cmd = [sys.executable, "-m", "bert_jax.main", f"--config={config}", f"--workdir={workdir}"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(
        [*cmd, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
