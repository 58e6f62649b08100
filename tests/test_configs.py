"""Configs: the paper's recipe, typed and locked overrides, clear errors for typos."""

import pathlib

import pytest

from bert_jax.config_lib import load_config, to_bert_config

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"


def _parse(*argv):
    return load_config(argv)


def test_pretrain_base_is_the_papers_recipe():
    c = _parse(f"--config={CONFIGS}/pretrain.py:model=base")
    assert (c.batch_size, c.total_steps, c.learning_rate) == (256, 1_000_000, 1e-4)
    assert (c.warmup_steps, c.weight_decay, c.optimizer, c.schedule) == (
        10_000,
        0.01,
        "bert_adam",
        "bert",
    )
    assert (c.data.seq_len, c.data.phase2_seq_len, c.data.phase2_fraction) == (128, 512, 0.1)
    assert (c.data.masked_lm_prob, c.data.max_predictions, c.clip_norm) == (0.15, 20, 1.0)
    m = to_bert_config(c.model)
    assert (m.num_layers, m.hidden_size, m.num_heads, m.hidden_dropout) == (12, 768, 12, 0.1)


def test_pretrain_ltr_is_a_causal_model_without_nsp():
    c = _parse(f"--config={CONFIGS}/pretrain.py:model=tiny,objective=ltr")
    assert (c.objective, c.nsp, to_bert_config(c.model).causal) == ("ltr", False, True)
    c = _parse(f"--config={CONFIGS}/pretrain.py:model=tiny")
    assert (c.objective, c.nsp, to_bert_config(c.model).causal) == ("mlm", True, False)
    with pytest.raises(Exception, match="Unknown objective 'rtl'"):
        _parse(f"--config={CONFIGS}/pretrain.py:objective=rtl")


def test_overrides_are_typed_and_nested():
    c = _parse(
        f"--config={CONFIGS}/pretrain.py:model=large",
        "--config.learning_rate=5e-5",
        "--config.model.num_layers=3",
        "--config.mesh_shape=(2,2,2)",
        "--config.init_checkpoint=/ckpt",
    )
    assert c.learning_rate == 5e-5 and c.model.num_layers == 3 and c.model.hidden_size == 1024
    assert tuple(c.mesh_shape) == (2, 2, 2) and c.init_checkpoint == "/ckpt"


def test_mistyped_override_names_the_closest_key():
    with pytest.raises(Exception, match='Did you mean "learning_rate"'):
        _parse(f"--config={CONFIGS}/pretrain.py:model=tiny", "--config.learnig_rate=1e-4")
    with pytest.raises(Exception, match="batch_size"):
        _parse(f"--config={CONFIGS}/pretrain.py:model=tiny", "--config.batch_size=lots")


def test_unknown_model_and_argument_are_refused_with_choices():
    with pytest.raises(Exception, match="Unknown model 'huge'.*'tiny'"):
        _parse(f"--config={CONFIGS}/pretrain.py:model=huge")
    with pytest.raises(Exception, match="Unknown config argument 'modle'.*model"):
        _parse(f"--config={CONFIGS}/pretrain.py:modle=base")


def test_bucket_urls_are_refused_with_the_mount_to_use():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bert_jax.main", "--config=configs/pretrain.py:model=tiny",
         "--workdir=gs://bucket/run"],
        cwd=CONFIGS.parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--workdir=gs://bucket/run" in proc.stderr and "/gcs/bucket/run" in proc.stderr
