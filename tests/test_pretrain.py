"""Pretraining runs as a researcher launches them (``python -m bert_jax.main`` in a subprocess):
exact resume, sharding and multi-process equivalence, kills, NaNs and mismatched workdirs."""

import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from bert_jax.prepare import prepare
from tests.local_jobs import run_processes

ROOT = pathlib.Path(__file__).parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic"
    prepare(str(out), synthetic=300, spm_vocab_size=256, max_seq_lengths=[32, 64], seed=0)
    return str(out)


def _flags(data_dir, workdir, steps, **overrides):
    config = {
        "data.data_dir": data_dir,
        "data.synthetic_documents": 0,
        "data.seq_len": 32,
        "data.max_predictions": 5,
        "batch_size": 8,
        "total_steps": steps,
        "log_every_steps": 1,
        "eval_every_steps": 0,
        "checkpoint_every_steps": 5,
        # Constant: a run of 10 steps then 10 more sees the same rates as one of 20.
        "schedule": "constant",
        "warmup_steps": 0,
        "learning_rate": 1e-3,
        **overrides,
    }
    return [
        sys.executable,
        "-m",
        "bert_jax.main",
        "--config=configs/pretrain.py:model=tiny",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in config.items()),
    ]


def _env(devices=8):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run(data_dir, workdir, steps, devices=8, check=True, **overrides):
    proc = subprocess.run(
        _flags(data_dir, workdir, steps, **overrides),
        cwd=ROOT,
        env=_env(devices),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode:
        raise AssertionError(f"run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def losses(workdir):
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    by_step = {r["step"]: r["loss"] for r in rows if "loss" in r}
    return np.array([by_step[s] for s in sorted(by_step)])


def committed_steps(workdir):
    root = pathlib.Path(workdir, "checkpoints")
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """12 steps in one go on a (2,2,2) mesh of 8 devices, dropout on: the reference run."""
    workdir = tmp_path_factory.mktemp("straight")
    run(data_dir, workdir, 12, **{"mesh_shape": "(2,2,2)"})
    return losses(workdir)


def test_resume_in_a_new_process_is_exact(data_dir, straight, tmp_path):
    """Also with the loader's worker processes: their batches are the straight run's."""
    workers = {"mesh_shape": "(2,2,2)", "data.worker_count": 2}
    run(data_dir, tmp_path, 6, **workers)
    assert committed_steps(tmp_path)[-1] == 6
    with pytest.raises(AssertionError, match=r"data.worker_count: 2 -> 0"):
        run(data_dir, tmp_path, 12, mesh_shape="(2,2,2)")
    run(data_dir, tmp_path, 12, **workers)
    resumed = losses(tmp_path)
    assert len(resumed) == 12
    np.testing.assert_array_equal(resumed, straight)
    assert json.loads((tmp_path / "results.json").read_text())["step"] == 12


def test_one_device_equals_eight_device_mesh(data_dir, straight, tmp_path):
    run(data_dir, tmp_path, 12, devices=1, **{"mesh_shape": "(1,1,1)"})
    np.testing.assert_allclose(losses(tmp_path), straight, rtol=1e-4)


def test_two_processes_equal_one(data_dir, straight, tmp_path, free_port):
    """Two local processes with 4 devices each, joined by jax.distributed, on a (2,2,2) mesh."""
    job = _flags(data_dir, tmp_path, 12, mesh_shape="(2,2,2)")
    job += [f"--coordinator_address=127.0.0.1:{free_port}", "--num_processes=2"]
    run_processes([job + [f"--process_id={i}"] for i in range(2)], ROOT, _env(4))
    np.testing.assert_allclose(losses(tmp_path), straight, rtol=1e-4)
    # Every process wrote its part of the input-pipeline state into the checkpoint.
    data_state = sorted(
        f for f in os.listdir(tmp_path / "checkpoints" / "12" / "data") if f.endswith(".json")
    )
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]


def test_sigkill_after_first_checkpoint_resumes_and_finishes(data_dir, tmp_path):
    proc = subprocess.Popen(
        _flags(data_dir, tmp_path, 60, checkpoint_every_steps=5),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not committed_steps(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = committed_steps(tmp_path)
    assert first and first[-1] < 60, "killed after its first checkpoint, before the end"
    run(data_dir, tmp_path, 60, checkpoint_every_steps=5)
    assert committed_steps(tmp_path)[-1] == 60
    assert len(losses(tmp_path)) >= 60


def test_sigterm_saves_and_exits_then_resumes(data_dir, tmp_path):
    proc = subprocess.Popen(
        _flags(data_dir, tmp_path, 500, checkpoint_every_steps=1000),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "preemption" in err
    (stopped,) = committed_steps(tmp_path)  # saved at the step it was told to stop
    assert 3 <= stopped < 500
    run(data_dir, tmp_path, stopped + 2, checkpoint_every_steps=1000)
    assert committed_steps(tmp_path)[-1] == stopped + 2


def test_two_phases_switch_sequence_length(data_dir, tmp_path):
    proc = run(
        data_dir,
        tmp_path,
        6,
        **{
            "data.phase2_fraction": 0.5,
            "data.phase2_seq_len": 64,
            "data.phase2_max_predictions": 10,
            "model.max_position_embeddings": 64,
            "data.worker_count": 1,  # the phase-1 loader's worker is stopped at the change
        },
    )
    assert "Phase change at step 3: seq_len 64" in proc.stderr
    assert len(losses(tmp_path)) == 6


KILL_DURING_SAVE = """
import os, signal, sys
from bert_jax import checkpoints
original = checkpoints.Checkpointer.save
def save_then_die(self, step, *args, **kwargs):
    saved = original(self, step, *args, **kwargs)
    if step == 10:  # the async save of step 10 is now in flight: die before it can commit
        os.kill(os.getpid(), signal.SIGKILL)
    return saved
checkpoints.Checkpointer.save = save_then_die
from absl import app
from bert_jax import main
sys.argv = sys.argv[1:]
main.flags.mark_flags_as_required(["config", "workdir"])
app.run(main.main)
"""


def test_kill_during_async_save_keeps_previous_checkpoint(data_dir, tmp_path):
    cmd = _flags(data_dir, tmp_path, 20)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, *cmd[2:]],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL
    assert committed_steps(tmp_path) == [5], "step 10 was in flight and must not count"
    # The previous checkpoint is intact and usable: the run resumes from it and finishes.
    run(data_dir, tmp_path, 20)
    assert committed_steps(tmp_path)[-1] == 20


def test_nan_stops_the_run_and_last_checkpoint_is_finite(data_dir, tmp_path):
    proc = run(
        data_dir,
        tmp_path,
        40,
        check=False,
        learning_rate=1e30,
        schedule="bert",
        warmup_steps=20,  # a few sane steps first, so that finite checkpoints exist
        checkpoint_every_steps=1,
        clip_norm=0.0,
    )
    assert proc.returncode != 0
    assert "Non-finite" in proc.stderr
    steps = committed_steps(tmp_path)
    assert steps and steps[-1] < 40
    state = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / str(steps[-1]) / "state")
    leaves = [np.asarray(x) for x in jax.tree.leaves(state["params"])]
    assert all(np.isfinite(x).all() for x in leaves)


def test_workdir_with_another_config_is_refused(data_dir, tmp_path):
    run(data_dir, tmp_path, 2)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    proc = run(data_dir, tmp_path, 4, check=False, **{"model.num_layers": 3})
    assert proc.returncode != 0
    assert "model.num_layers: 2 -> 3" in proc.stderr and "new --workdir" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_corrupt_checkpoint_fails_with_the_way_out(data_dir, tmp_path):
    run(data_dir, tmp_path, 5)
    state_dir = tmp_path / "checkpoints" / "5" / "state"
    for f in state_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")
    proc = run(data_dir, tmp_path, 10, check=False)
    assert proc.returncode != 0
    assert "could not be restored" in proc.stderr and "Delete that step's folder" in proc.stderr


def test_init_checkpoint_from_a_converted_directory(data_dir, tmp_path):
    """A converted checkpoint (a random model saved in that format) is where training starts."""
    from bert_jax import pretrained
    from bert_jax.models.bert import BertConfig
    from bert_jax.models.heads import BertForPreTraining

    cfg = BertConfig.from_name("tiny", vocab_size=256, max_position_embeddings=128)
    params = BertForPreTraining(cfg).init(jax.random.key(7), np.zeros((1, 8), np.int32))["params"]
    params = jax.device_get(nn.unbox(params))
    pretrained.save(tmp_path / "converted", cfg, params, os.path.join(data_dir, "tokenizer"))
    # A zero learning rate: the run's parameters must stay exactly the converted ones.
    run(data_dir, tmp_path / "run", 1, learning_rate=0.0, weight_decay=0.0,
        init_checkpoint=tmp_path / "converted")  # fmt: skip
    state = ocp.StandardCheckpointer().restore(tmp_path / "run" / "checkpoints" / "1" / "state")
    got, want = traverse_util.flatten_dict(state["params"]), traverse_util.flatten_dict(params)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg="/".join(k))


def test_total_steps_may_change_only_where_nothing_depends_on_it(data_dir, tmp_path):
    run(data_dir, tmp_path, 2, schedule="bert", warmup_steps=1)
    proc = run(data_dir, tmp_path, 4, check=False, schedule="bert", warmup_steps=1)
    assert proc.returncode != 0 and "total_steps: 2 -> 4" in proc.stderr


def test_a_pretraining_workdir_is_an_initial_checkpoint(data_dir, tmp_path):
    """Fine-tuning (or more pretraining) starts from a workdir's latest parameters alone."""
    from bert_jax import checkpoints

    run(data_dir, tmp_path, 2, checkpoint_every_steps=2)
    model_config, params, tokenizer_dir = checkpoints.load_init_checkpoint(str(tmp_path))
    assert model_config.num_layers == 2 and os.path.exists(
        os.path.join(tokenizer_dir, "tokenizer.json")
    )
    state = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "2" / "state")
    got, want = traverse_util.flatten_dict(params), traverse_util.flatten_dict(state["params"])
    assert got.keys() == want.keys()
    for k in want:
        assert isinstance(got[k], np.ndarray)
        np.testing.assert_array_equal(got[k], want[k])


def test_left_to_right_pretraining_then_squad_with_a_bilstm_stays_causal(data_dir, tmp_path):
    """The paper's "LTR & No NSP" and "+ BiLSTM": a causal model pretrained as a left-to-right LM
    (held-out next-token accuracy and perplexity; no MLM, no NSP); SQuAD fine-tuning starts from
    its workdir with a causal encoder and a fresh BiLSTM between encoder and span head."""
    from bert_jax import checkpoints
    from bert_jax.config_lib import load_config
    from bert_jax.models.bert import BertModel
    from bert_jax.tasks import get_family

    ltr = {"objective": "ltr", "nsp": False, "model.causal": True}
    run(data_dir, tmp_path, 4, devices=2, eval_every_steps=4, **ltr)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    held_out = next(r for r in rows if "eval/lm_loss" in r)
    assert held_out["eval/lm_perplexity"] == pytest.approx(math.exp(held_out["eval/lm_loss"]))
    assert 0.0 < held_out["eval/lm_accuracy"] < 1.0 and "lm_accuracy" in rows[0]
    assert not [k for r in rows for k in r if "mlm" in k or "nsp" in k]

    # What fine-tuning reads: the workdir's model config, causal (architecture, which the
    # fine-tuning config cannot override), and its parameters under the family's fresh head.
    cfg, params, _ = checkpoints.load_init_checkpoint(str(tmp_path))
    assert cfg.causal and "causal" not in checkpoints.RUNTIME_FIELDS
    squad = f"--config={ROOT}/configs/squad.py:model=tiny"
    model = get_family(load_config([squad, "--config.bilstm_on_top=true"])).model(cfg)
    ids = np.random.default_rng(0).integers(5, cfg.vocab_size, (2, 16))
    fresh = nn.unbox(jax.jit(model.init)(jax.random.key(0), ids)["params"])
    tuned = checkpoints.merge_params(params, fresh, "the LTR workdir")
    assert set(tuned) == {"bert", "bilstm", "qa_outputs"}
    assert set(tuned["bilstm"]) == {"forward", "backward"}
    assert tuned["qa_outputs"]["kernel"].shape == (2 * cfg.hidden_size, 2)
    # Tokens from 9 on changed: the encoder's outputs before 9 stay, the BiLSTM's right context
    # moves the span logits there.
    later = ids.copy()
    later[:, 9:] = (later[:, 9:] + 3) % cfg.vocab_size
    encode = jax.jit(BertModel(cfg).apply)
    before, after = (encode({"params": tuned["bert"]}, x) for x in (ids, later))
    np.testing.assert_allclose(after.sequence_output[:, :9], before.sequence_output[:, :9])
    apply = jax.jit(model.apply)
    (start, _), (start_later, _) = (apply({"params": tuned}, x) for x in (ids, later))
    assert not np.allclose(start[:, :9], start_later[:, :9])


def test_objective_and_model_must_agree_before_anything_runs(tmp_path):
    from bert_jax import pretrain
    from bert_jax.config_lib import load_config

    config = load_config([f"--config={ROOT}/configs/pretrain.py:model=tiny"])
    config.objective = "ltr"  # without configs/pretrain.py:objective=ltr's causal model
    with pytest.raises(ValueError, match="objective='ltr' with model.causal=False"):
        pretrain.train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / "config.json").exists()
