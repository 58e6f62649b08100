"""Sweeps: grid expansion, valid configs for every sweep file, real runs of a fake trainer.

The trainer is a tiny script written by the tests: it records each call and writes metrics.jsonl
and results.json from its --config.* arguments, so launching, skipping, failure reporting and the
tables and plots are exercised for real without training a model.
"""

import csv
import pathlib
import re
import shlex
import statistics
import subprocess
import sys

import pytest

from bert_jax import sweep as sw
from bert_jax.config_lib import load_config

REPO = pathlib.Path(__file__).resolve().parent.parent

FAKE_TRAINER = r"""
import json, pathlib, sys

calls = pathlib.Path(sys.argv[1])
args = dict(a.split("=", 1) for a in sys.argv[2:])
workdir = pathlib.Path(args["--workdir"])
lr, seed = float(args["--config.learning_rate"]), int(args["--config.seed"])
with open(calls, "a") as f:
    f.write(workdir.name + "\n")
if lr >= 0.01:  # "diverges": seed 0 crashes, seed 1 exits cleanly without results
    print("loss is NaN")
    sys.exit(3 if seed == 0 else 0)
workdir.mkdir(parents=True, exist_ok=True)
with open(workdir / "metrics.jsonl", "w") as f:
    for step in range(0, 50, 10):
        f.write(json.dumps({"step": step, "loss": 5.0 / (1 + step * lr * 1000)}) + "\n")
    f.write('{"step": 50, "lo')  # a torn last line, as a live run leaves it
results = {"eval/mlm_accuracy": 0.5 + 1000 * lr + 0.01 * seed, "step": int(args.get(
    "--config.total_steps", 50)), "note": "not a number"}
(workdir / "results.json").write_text(json.dumps(results))
"""

SWEEP_FILE = """
from bert_jax.sweep import Sweep


def get_sweep(arg=None):
    lrs = [float(x) for x in (arg or "1e-4+3e-4").split("+")]
    return Sweep("configs/pretrain.py:model=tiny", [{"learning_rate": lrs}, {"seed": [0, 1]}],
                 metric="eval/mlm_accuracy", mode="max")
"""

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.,=+-]+$")


def write_fake(tmp_path, trainer_text, sweep_text):
    """(trainer command, calls file, sweep file): a fake trainer that records its calls in the
    calls file, and a sweep file, written into ``tmp_path``."""
    trainer = tmp_path / "fake_trainer.py"
    trainer.write_text(trainer_text)
    sweep_file = tmp_path / "fake_sweep.py"
    sweep_file.write_text(sweep_text)
    calls = tmp_path / "calls.txt"
    return [sys.executable, str(trainer), str(calls)], calls, sweep_file


@pytest.fixture
def fake(tmp_path):
    return write_fake(tmp_path, FAKE_TRAINER, SWEEP_FILE)


def _calls(path):
    return path.read_text().split() if path.exists() else []


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bert_jax.sweep", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------------------------- the grid


def test_grid_is_the_product_of_axes_with_zipped_fields_together():
    sweep = sw.Sweep(
        "configs/pretrain.py:model=tiny",
        [
            {"data.mask_token_ratio": [0.8, 1.0], "data.random_token_ratio": [0.1, 0.0]},
            {"learning_rate": [5e-5, 3e-5, 2e-5]},
            {"model_name": ["a/b c", "d"], "mesh_shape": [(2, 2, 2), (-1, 1, 1)]},
            {"seed": [0, 1]},
        ],
        metric="eval/mlm_accuracy",
    )
    runs = sweep.runs()
    assert len(runs) == 2 * 3 * 2 * 2
    pairs = {
        (r.overrides["data.mask_token_ratio"], r.overrides["data.random_token_ratio"]) for r in runs
    }
    assert pairs == {(0.8, 0.1), (1.0, 0.0)}  # zipped, never crossed
    combos = {
        (r.overrides["data.mask_token_ratio"], r.overrides["learning_rate"], r.overrides["seed"])
        for r in runs
    }
    assert len(combos) == 2 * 3 * 2
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    assert all(SAFE_NAME.match(n) for n in names), names
    assert names[0] == (
        "data.mask_token_ratio=0.8,data.random_token_ratio=0.1,learning_rate=5e-05,"
        "model_name=a_b_c,mesh_shape=2x2x2,seed=0"
    )
    assert sweep.setting_fields == (
        "data.mask_token_ratio",
        "data.random_token_ratio",
        "learning_rate",
        "model_name",
        "mesh_shape",
    )
    assert sw.config_args(runs[0].overrides)[-2:] == [
        "--config.mesh_shape=(2,2,2)",
        "--config.seed=0",
    ]


@pytest.mark.parametrize(
    "axes, mode, match",
    [
        ([{"a": [1, 2], "b": [1]}], "max", "lengths"),
        ([{"a": [1]}, {"a": [2]}], "max", "several axes"),
        ([{"a": []}], "max", "no values"),
        ([{"a b": [1]}], "max", "config path"),
        ([{"a": [1]}], "best", "'max' or 'min'"),
    ],
)
def test_bad_sweeps_fail_naming_the_problem(axes, mode, match):
    with pytest.raises(ValueError, match=match):
        sw.Sweep("configs/pretrain.py", axes, metric="m", mode=mode)


def test_settings_mean_std_and_best_in_both_modes():
    sweep = sw.Sweep("c.py", [{"lr": [1, 2]}, {"seed": [0, 1, 2]}], metric="loss", mode="min")
    values = {"lr=1,seed=0": 3.0, "lr=1,seed=1": 5.0, "lr=1,seed=2": None, "lr=2,seed=0": 4.5}
    results = {n: None if v is None else {"loss": v, "step": 9} for n, v in values.items()}
    results.update({"lr=2,seed=1": None, "lr=2,seed=2": None})
    keys, settings, best = sw.summarize(sweep, results)
    assert keys == ["loss", "step"]
    by_lr = {s.overrides["lr"]: s for s in settings}
    assert (by_lr[1].n, by_lr[1].mean["loss"], by_lr[1].std["loss"]) == (
        2,
        4.0,
        statistics.stdev([3, 5]),
    )
    assert by_lr[2].n == 1 and by_lr[2].mean["loss"] == 4.5
    assert best is by_lr[1]  # lower loss is better
    max_sweep = sw.Sweep("c.py", sweep.axes, metric="loss", mode="max")
    assert sw.summarize(max_sweep, results)[2].overrides == {"lr": 2}
    with pytest.raises(ValueError, match="no metric 'accuracy'.*'loss'"):
        sw.summarize(sw.Sweep("c.py", sweep.axes, metric="accuracy"), results)


# ------------------------------------------------------------------------- the sweep files


def _lookup(config, field):
    for part in field.split("."):
        config = config[part]
    return config


def _check_runs_build_their_configs(sweep):
    for run in sweep.runs():
        command = sw.run_command(sweep, run, "/tmp/sweep", trainer=["trainer"])
        config = load_config([a for a in command[1:] if not a.startswith("--workdir=")])
        for field, value in run.overrides.items():
            assert _lookup(config, field) == value, (run.name, field)


@pytest.mark.parametrize(
    "task, metric",
    [
        ("mnli", "best/dev_matched/accuracy"),
        ("cola", "best/dev/matthews_corr"),
        ("STS-B", "best/dev/spearmanr"),
        ("mrpc", "best/dev/f1"),
        ("qqp", "best/dev/f1"),
        ("rte", "best/dev/accuracy"),
    ],
)
def test_glue_sweep_is_the_papers_grid(task, metric):
    sweep = sw.load_sweep(f"configs/sweeps/glue_paper.py:task={task},model=tiny,seeds=2")
    assert sweep.metric == metric and sweep.mode == "max"
    grid = {
        (r.overrides["batch_size"], r.overrides["learning_rate"], r.overrides["num_epochs"])
        for r in sweep.runs()
    }
    assert grid == {(b, lr, e) for b in (16, 32) for lr in (5e-5, 3e-5, 2e-5) for e in (2, 3, 4)}
    assert len(sweep.runs()) == 18 * 2
    if task == "mnli":  # the config is the same for every task: check its overrides once
        _check_runs_build_their_configs(sweep)


def test_glue_sweep_refuses_a_task_without_dev_set():
    with pytest.raises(ValueError, match="no dev split"):
        sw.load_sweep("configs/sweeps/glue_paper.py:task=ax")


def test_validate_catches_a_misspelled_override_before_launching():
    sweep = sw.load_sweep("configs/sweeps/squad_paper.py:model=tiny,seeds=1")
    sw.validate(sweep, ["--config.num_epochs=1.0"])
    with pytest.raises(ValueError, match='learning_rate=5e-05,seed=0.*Did you mean "num_epochs"'):
        sw.validate(sweep, ["--config.num_epoch=1.0"])


# --------------------------------------------------------------------------- running sweeps


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_local_sweep_runs_in_parallel_tabulates_plots_and_resumes(fake, tmp_path):
    trainer, calls, sweep_file = fake
    out = tmp_path / "sweep"
    args = [
        f"--sweep={sweep_file}",
        f"--sweep_dir={out}",
        "--parallel=2",
        f"--trainer={' '.join(trainer)}",
        "--extra=--config.total_steps=7",
    ]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(_calls(calls)) == sorted(
        f"learning_rate={lr},seed={s}" for lr in ("0.0001", "0.0003") for s in (0, 1)
    )
    assert "Best setting: learning_rate=0.0003: 0.805 ± 0.007071 (n=2)" in result.stdout

    rows = _csv_rows(out / "results.csv")
    settings = {r["learning_rate"]: r for r in rows if r["kind"] == "setting"}
    runs = [r for r in rows if r["kind"] == "run"]
    assert len(runs) == 4 and {r["step"] for r in runs} == {"7"}  # --extra reached every run
    for lr, accs in (("0.0001", [0.6, 0.61]), ("0.0003", [0.8, 0.81])):
        row = settings[lr]
        assert row["n"] == "2" and row["seed"] == ""
        assert float(row["eval/mlm_accuracy"]) == pytest.approx(statistics.mean(accs))
        assert float(row["eval/mlm_accuracy/std"]) == pytest.approx(statistics.stdev(accs))
    assert (settings["0.0003"]["best"], settings["0.0001"]["best"]) == ("True", "False")
    assert "note" not in rows[0]  # non-numeric results are left out

    md = (out / "results.md").read_text()
    best_row = next(line for line in md.splitlines() if line.startswith("| **best**"))
    assert "| 0.0003 | 2 | 0.805 ± 0.007071 |" in best_row
    assert "| learning_rate=0.0003,seed=1 | 0.0003 | 1 | finished | 0.81 | 7 |" in md
    for png in ("plot_learning_rate.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "plot_seed.png").exists()  # seeds are averaged over, not plotted
    log = (out / "learning_rate=0.0001,seed=0" / "log.txt").read_text()
    assert log.startswith("=== ") and f"\n{trainer[0]} " in log
    assert "--config.learning_rate=0.0001" in log

    # Again: every run is finished, so nothing is launched; the tables are rewritten.
    (out / "results.md").unlink()
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert "4 runs, 4 finished already, 0 to run." in again.stdout
    assert len(_calls(calls)) == 4 and (out / "results.md").exists()
    (out / "results.csv").unlink()
    assert _cli(f"--sweep={sweep_file}", f"--sweep_dir={out}", "--tabulate_only").returncode == 0
    assert _csv_rows(out / "results.csv") == rows and len(_calls(calls)) == 4


def test_failed_runs_are_reported_and_do_not_stop_the_others(fake, tmp_path):
    trainer, calls, sweep_file = fake
    sweep = sw.load_sweep(f"{sweep_file}:1e-4+0.05")
    out = tmp_path / "sweep"
    messages = []
    failed = sw.launch(sweep, out, parallel=2, trainer=trainer, echo=messages.append)
    assert len(_calls(calls)) == 4
    assert failed.keys() == {"learning_rate=0.05,seed=0", "learning_rate=0.05,seed=1"}
    assert failed["learning_rate=0.05,seed=0"].startswith("exit code 3")
    assert "wrote no results.json" in failed["learning_rate=0.05,seed=1"]
    assert sum("FAILED" in m for m in messages) == 2
    assert "loss is NaN" in (out / "learning_rate=0.05,seed=0" / "log.txt").read_text()
    best = sw.tabulate(sweep, out)
    assert best.overrides == {"learning_rate": 1e-4} and best.n == 2
    md = (out / "results.md").read_text()
    assert md.count("not finished") == 2

    # Through the command line the sweep exits non-zero and names the failures; only the failed
    # runs are tried again.
    result = _cli(
        f"--sweep={sweep_file}:1e-4+0.05", f"--sweep_dir={out}", f"--trainer={' '.join(trainer)}"
    )
    assert result.returncode == 1
    assert (
        "2 run(s) failed" in result.stdout
        and "learning_rate=0.05,seed=0: exit code 3" in result.stdout
    )
    assert len(_calls(calls)) == 6


def test_dry_run_prints_the_exact_commands_and_runs_nothing(fake, tmp_path):
    trainer, calls, sweep_file = fake
    out = tmp_path / "sweep"
    result = _cli(
        f"--sweep={sweep_file}", f"--sweep_dir={out}", "--dry_run", "--extra=--config.total_steps=7"
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()[1:]
    assert commands == [
        f"{sys.executable} -m bert_jax.main --config=configs/pretrain.py:model=tiny "
        f"--workdir={out}/learning_rate={lr},seed={seed} --config.learning_rate={lr} "
        f"--config.seed={seed} --config.total_steps=7"
        for lr in ("0.0001", "0.0003")
        for seed in (0, 1)
    ]
    assert not out.exists() and not calls.exists()


def test_tpu_vm_launcher_runs_each_run_through_the_script(fake, tmp_path):
    sweep = sw.load_sweep(f"{fake[2]}")
    run = sweep.runs()[0]
    command = sw.run_command(sweep, run, tmp_path, launcher="tpu_vm", remote_dir="gs://b/sweeps/")
    assert command == [
        "bash",
        str(REPO / "launch" / "tpu_vm.sh"),
        "mount,train,collect",
        "--config=configs/pretrain.py:model=tiny",
        "--workdir=gs://b/sweeps/learning_rate=0.0001,seed=0",
        f"--collect_to={tmp_path}/learning_rate=0.0001,seed=0",
        "--",
        "--config.learning_rate=0.0001",
        "--config.seed=0",
    ]
    with pytest.raises(ValueError, match="--remote_dir=gs://"):
        sw.run_command(sweep, run, tmp_path, launcher="tpu_vm", remote_dir="/local")
    printed = []
    sw.launch(sweep, tmp_path, launcher="tpu_vm", remote_dir="gs://b/sweeps", dry_run=True,
              echo=printed.append)  # fmt: skip
    assert printed[1] == shlex.join(command) and len(printed) == 5
    with pytest.raises(ValueError, match="--parallel=1"):
        sw.launch(sweep, tmp_path, launcher="tpu_vm", parallel=2, remote_dir="gs://b")


def test_plots_for_zipped_and_crossed_axes(tmp_path):
    sweep = sw.Sweep(
        "configs/pretrain.py",
        [
            {"data.mask_token_ratio": [0.8, 0.8, 0.0], "data.random_token_ratio": [0.1, 0.2, 0.8]},
            {"batch_size": [16, 32]},
            {"optimizer": ["adamw", "lamb"]},
            {"seed": [0, 1]},
        ],
        metric="acc",
    )
    for i, run in enumerate(sweep.runs()):
        (tmp_path / run.name).mkdir()
        (tmp_path / run.name / "results.json").write_text(f'{{"acc": {i / 24}}}')
    best = sw.tabulate(sweep, tmp_path)
    assert best.overrides["data.mask_token_ratio"] == 0.0 and best.overrides["optimizer"] == "lamb"
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    # Strings (optimizer) and seeds are not plotted; no metrics.jsonl, no loss curves.
    assert pngs == [
        "plot_batch_size.png",
        "plot_data.mask_token_ratio.png",
        "plot_data.random_token_ratio.png",
    ]
