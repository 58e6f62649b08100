"""The benchmarks run end to end at tiny sizes and report what they promise; the results-table
helper keeps each benchmark's rows in its own table."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import append_result
from benchmarks.train_step import make_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *args: str) -> tuple[dict, str]:
    # One fake CPU device as on a real CPU machine, instead of the suite's eight.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--no_results_file"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


@pytest.mark.slow
def test_train_step_benchmark_reports_all_implementations(tmp_path):
    # KerasHub lives in its own environment, absent here: a stand-in Python that answers as
    # benchmarks/keras_peer.py does checks the plumbing (its figure is set against the MLM-only
    # bert_jax step). The real one: --keras_python=.venv-keras/bin/python.
    keras_python = tmp_path / "python"
    answer = {"setup_s": 1.0, "compile_s": 2.0, "step_times_s": [0.5, 0.25, 0.5],
              "step_time_s": 0.5, "max_rss_bytes": 10**9}  # fmt: skip
    keras_python.write_text(f"#!/bin/sh\necho '{json.dumps(answer)}'\n")
    keras_python.chmod(0o755)
    result, stdout = _run(
        "benchmarks.train_step",
        "--model=tiny",
        "--seq=32",
        "--batch=4",
        "--steps=2",
        "--warmup=1",
        "--predictions=5",
        "--peers=hf_flax,hf_torch,keras_hub",
        f"--keras_python={keras_python}",
    )
    assert "hf_torch" in stdout and "no NSP head" in stdout  # the human table comes first
    assert result["keras_hub"]["tokens_per_sec"] == 4 * 32 / 0.5
    assert result["ratios"]["vs_keras_hub"] == pytest.approx(
        result["bert_jax_mlm"]["tokens_per_sec"] / result["keras_hub"]["tokens_per_sec"]
    )
    assert result["config"]["memory"]["keras_hub_process_max_rss_bytes"] == 10**9
    for name in ("bert_jax", "bert_jax_mlm", "hf_flax", "hf_torch"):
        r = result[name]
        assert r["tokens_per_sec"] > 0 and r["step_time_s"] > 0 and r["tflops"] > 0
        assert len(r["step_times_s"]) == 2
        assert r["tokens_per_sec"] == pytest.approx(4 * 32 / r["step_time_s"])
    assert result["bert_jax"]["compile_s"] > 0 and result["hf_flax"]["compile_s"] > 0
    assert result["bert_jax"]["mfu"] is None  # no known peak for a CPU
    ratios = result["ratios"]
    assert ratios["vs_hf_flax"] == pytest.approx(
        result["bert_jax"]["tokens_per_sec"] / result["hf_flax"]["tokens_per_sec"]
    )
    assert ratios["vs_hf_torch"] > 0
    config = result["config"]
    assert config["tokens_per_step"] == 128 and config["torch_dtype"] == "float32"
    assert config["memory"]["process_max_rss_bytes"] > 0
    # The step against this machine's own matmul rate, measured in the same run.
    assert config["matmul_tflops"] > 0
    bert_jax = result["bert_jax"]
    assert bert_jax["of_matmul_rate"] == pytest.approx(bert_jax["tflops"] / config["matmul_tflops"])


@pytest.mark.slow
def test_finetune_benchmark_reports_padded_bucketed_packed_and_torch():
    result, stdout = _run(
        "benchmarks.finetune", "--model=tiny", "--data=synthetic", "--examples=64",
        "--batch=16", "--rounds=1", "--max_seq_length=64",
    )  # fmt: skip
    assert "packed" in stdout
    for name in ("padded", "bucketed", "packed", "hf_torch"):
        r = result[name]
        assert r["examples_per_sec"] == pytest.approx(64 / r["epoch_s"][0])
    ratios = result["ratios"]
    for ours in ("bucketed", "packed"):
        assert ratios[f"{ours}_vs_padded"] == pytest.approx(
            result[ours]["examples_per_sec"] / result["padded"]["examples_per_sec"]
        )
        assert ratios[f"{ours}_vs_hf_torch"] > 0
    assert result["config"]["best_peer"] == "hf_torch" and 20 < result["config"]["tokens_mean"] < 35


def test_gpu_script_commands_parse():
    """benchmarks/gpu.sh --dry_run prints the GPU measurement's commands; each parses. (Run
    here in full at tiny sizes with ``bash benchmarks/gpu.sh --smoke``: minutes, not in CI.)"""
    import importlib
    import shlex

    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry_run"], cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    commands = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line[:2] == "+ "]
    assert [c[2] for c in commands] == ["benchmarks.train_step"] * 3 + ["benchmarks.finetune"]
    dtypes = []
    for command in commands:
        args = importlib.import_module(command[2]).parse(command[3:])
        dtypes.append(getattr(args, "dtype", None))
    assert dtypes == ["bfloat16"] * 3 + [None]


def test_keras_hub_needs_its_environment():
    from benchmarks import finetune, train_step

    for run in (train_step.run, finetune.run):
        with pytest.raises(ValueError, match="--keras_python=PATH/bin/python"):
            run(peers=["keras_hub"])


def test_input_pipeline_benchmark(tmp_path):
    result, _ = _run(
        "benchmarks.input_pipeline",
        "--seq=64",
        "--batch=8",
        "--documents=20",
        "--seconds=0.5",
        "--warmup=1",
        f"--data_dir={tmp_path / 'data'}",
    )
    assert 0 < result["tokens_per_sec"] <= result["padded_tokens_per_sec"]
    assert result["fill"] == pytest.approx(
        result["tokens_per_sec"] / result["padded_tokens_per_sec"]
    )
    assert result["rows_per_sec"] == pytest.approx(result["padded_tokens_per_sec"] / 64)
    assert result["config"]["batches"] > 0
    assert isinstance(result["meets_target"], bool)


def test_make_batch_masks_the_same_tokens_for_every_head():
    sparse = make_batch(vocab_size=2000, batch=3, seq=16, predictions=4)
    full = make_batch(vocab_size=2000, batch=3, seq=16, predictions=4, full_head=True)
    labels = sparse["labels"]
    assert (labels != -100).sum(axis=1).tolist() == [4, 4, 4]
    assert (labels[:, 0] == -100).all()  # [CLS] is never masked
    rows = np.arange(3)[:, None]
    pos = sparse["masked_positions"]
    np.testing.assert_array_equal(labels[rows, pos], sparse["masked_ids"])
    assert (sparse["input_ids"][rows, pos] == 103).all()
    # The full head predicts everywhere but weighs exactly the masked positions.
    np.testing.assert_array_equal(full["masked_weights"], labels != -100)
    np.testing.assert_array_equal(full["masked_ids"][labels != -100], labels[labels != -100])
    np.testing.assert_array_equal(full["input_ids"], sparse["input_ids"])
    with pytest.raises(ValueError, match="predictions"):
        make_batch(vocab_size=2000, batch=1, seq=8, predictions=8)


def test_append_result_keeps_rows_in_their_own_section(tmp_path):
    path = str(tmp_path / "RESULTS.md")
    append_result("A", ["x"], [1], path)
    append_result("B", ["y", "z"], [2, 3], path)
    append_result("A", ["x"], [4], path)
    with open(path) as f:
        lines = f.read().splitlines()
    a, b = lines.index("## A"), lines.index("## B")
    section_a = [line for line in lines[a:b] if line.startswith("| 20")]
    assert [line.rsplit("|", 2)[1].strip() for line in section_a] == ["1", "4"]
    assert lines[b + 2].startswith("| date | y | z |")
    assert lines[-1].endswith("| 2 | 3 |")


@pytest.mark.parametrize("preset", [None, ""])
def test_benchmarks_restart_under_steady_malloc_unless_told_otherwise(preset):
    """The re-executed process has STEADY_MALLOC; a GLIBC_TUNABLES already set (even empty) is
    kept as it is."""
    from benchmarks import STEADY_MALLOC

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if preset is not None:
        env["GLIBC_TUNABLES"] = preset
    script = (
        "import os; from benchmarks import run_with_steady_malloc; run_with_steady_malloc(); "
        "print(repr(os.environ.get('GLIBC_TUNABLES')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(STEADY_MALLOC if preset is None else preset)


@pytest.mark.slow
def test_step_profile_accounts_for_the_model_flops_and_the_op_time():
    result, stdout = _run(
        "benchmarks.profile_step", "--model=tiny", "--seq=32", "--batch=4", "--steps=1"
    )  # fmt: skip
    assert "slowest ops" in stdout
    # The matmul FLOPs read from the compiled HLO's dot shapes against the analytic count of
    # REFERENCE.md section 5 (MLM head on the masked positions; the pruned last layer computes a
    # little less).
    assert 0.9 < result["computed_over_model_flops"] < 1.02
    categories = result["categories"]
    assert sum(c["seconds"] for c in categories.values()) == pytest.approx(result["op_time_s"])
    for name in ("dense matmuls", "attention matmuls", "MLM decoder matmuls"):
        assert categories[name]["dot_flops"] > 0
    for name in ("LayerNorm", "optimizer (clip, AdamW)", "loss and metrics"):
        assert categories[name]["seconds"] > 0 and categories[name]["dot_flops"] == 0
    assert 0 < result["matmul_share"] < 1 and result["of_matmul_rate"] > 0
