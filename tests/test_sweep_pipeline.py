"""Sweep pipelines: pretrain each row, fine-tune every pretrained model on each stage, tabulate.

A fake trainer (a script written here) stands in for bert_jax.main: pretraining writes an MLM
accuracy that depends on ``nsp``; fine-tuning refuses to start without its pretraining's
results.json and scores that accuracy plus a learning-rate and seed term, so the table's numbers
are known in advance. One slow test runs the same pipeline with real tiny runs.
"""

import csv
import math
import os
import pathlib
import shlex
import statistics
import subprocess
import sys

import pytest

from bert_jax import sweep as sw
from bert_jax.config_lib import load_config
from tests.test_sweep import REPO, _calls, _cli, write_fake

FAKE_TRAINER = r"""
import json, pathlib, sys

calls = pathlib.Path(sys.argv[1])
args = dict(a.split("=", 1) for a in sys.argv[2:])
workdir = pathlib.Path(args["--workdir"])
with open(calls, "a") as f:
    f.write(str(workdir) + "\n")
if "--config.init_checkpoint" in args:  # fine-tuning
    pretrained = pathlib.Path(args["--config.init_checkpoint"]) / "results.json"
    if not pretrained.exists():
        sys.exit(f"no pretrained model at {pretrained}")
    acc = json.loads(pretrained.read_text())["eval/mlm_accuracy"]
    lr, seed = float(args["--config.learning_rate"]), int(args["--config.seed"])
    epochs = float(args.get("--config.num_epochs", 10))
    results = {"best/dev/accuracy": acc + (0.1 if lr == 3e-4 else 0) + 0.01 * seed - epochs / 1000}
else:  # pretraining
    if float(args.get("--config.learning_rate", 0)) >= 0.01:
        print("loss is NaN")
        sys.exit(3)
    acc = 0.6 if args["--config.nsp"] == "True" else 0.5
    steps = int(args.get("--config.total_steps", 1200))
    results = {"eval/mlm_accuracy": acc, "eval/mlm_loss": 1.0 + acc, "step": steps}
workdir.mkdir(parents=True, exist_ok=True)
(workdir / "results.json").write_text(json.dumps(results))
"""

PIPELINE_FILE = """
import math

from bert_jax.sweep import Pipeline, Row, Stage, Sweep


def get_sweep(arg=None):
    rows = [Row("BERT", {"nsp": True}, paper={"MRPC acc": 86.7}), Row("No NSP", {"nsp": False})]
    if arg == "fail":
        rows.append(Row("diverges", {"nsp": False, "learning_rate": 0.05}))
    mrpc = Sweep("configs/glue.py:task=mrpc,model=tiny",
                 [{"learning_rate": [1e-4, 3e-4]}, {"seed": [0, 1]}], metric="best/dev/accuracy")
    return Pipeline(
        "configs/pretrain.py:model=tiny", rows, [Stage("MRPC acc", mrpc, name="mrpc", scale=100)],
        columns={"MLM acc": "eval/mlm_accuracy", "MLM ppl": lambda r: math.exp(r["eval/mlm_loss"])},
    )
"""

FINETUNE_RUNS = [f"learning_rate={lr},seed={s}" for lr in ("0.0001", "0.0003") for s in (0, 1)]


@pytest.fixture
def fake(tmp_path):
    """(trainer command, calls file, pipeline file)."""
    return write_fake(tmp_path, FAKE_TRAINER, PIPELINE_FILE)


def _relative(calls, root):
    return [str(pathlib.Path(c).relative_to(root)) for c in _calls(calls)]


def _csv_rows(path):
    with open(path) as f:
        return {row["row"]: row for row in csv.DictReader(f)}


def test_two_stage_pipeline_runs_in_order_resumes_and_reads_back(fake, tmp_path):
    trainer, calls, pipeline_file = fake
    out = tmp_path / "pipeline"
    args = [
        f"--sweep={pipeline_file}",
        f"--sweep_dir={out}",
        "--parallel=2",
        f"--trainer={shlex.join(trainer)}",
        "--extra=pretrain:--config.total_steps=7",
        "--extra=mrpc:--config.num_epochs=2.0",
    ]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    assert "10 runs, 0 finished already, 10 to run." in result.stdout
    order = _relative(calls, out)
    expected = [f"nsp={nsp}/pretrain" for nsp in (True, False)]
    expected += [f"nsp={nsp}/mrpc/{run}" for nsp in (True, False) for run in FINETUNE_RUNS]
    assert sorted(order) == sorted(expected)
    for nsp in (True, False):  # every fine-tuning run started after its pretraining finished
        first_finetune = min(order.index(f"nsp={nsp}/mrpc/{run}") for run in FINETUNE_RUNS)
        assert order.index(f"nsp={nsp}/pretrain") < first_finetune

    # The table: a row per setting; per the protocol the best learning rate (3e-4) on dev, as
    # mean ± std over its two restarts; the pretraining's metrics; stage-prefixed --extra applied.
    rows = _csv_rows(out / "results.csv")
    assert list(rows) == ["BERT", "No NSP"]
    for label, acc in (("BERT", 0.6), ("No NSP", 0.5)):
        row = rows[label]
        restarts = [100 * (acc + 0.1 + 0.01 * seed - 0.002) for seed in (0, 1)]
        assert float(row["MRPC acc"]) == pytest.approx(statistics.mean(restarts))
        assert float(row["MRPC acc/std"]) == pytest.approx(statistics.stdev(restarts))
        assert (row["MRPC acc/n"], row["MRPC acc/best"]) == ("2", "learning_rate=0.0003")
        assert (row["MRPC acc/finished"], row["MRPC acc/runs"]) == ("4", "4")
        assert float(row["MLM acc"]) == acc
        assert float(row["MLM ppl"]) == pytest.approx(math.exp(1 + acc))
        assert row["pretraining"] == "finished"
        pretrain_results = (out / row["pretrain"] / "pretrain" / "results.json").read_text()
        assert '"step": 7' in pretrain_results
    md = (out / "results.md").read_text()
    assert "| BERT | 0.600 | 4.95 | 70.3 ± 0.7 |" in md
    assert "| No NSP | 0.500 | 4.48 | 60.3 ± 0.7 |" in md
    assert "## The paper's numbers" in md and "| BERT |  |  | 86.7 |" in md
    assert "| BERT | 0.600 | 4.95 | 70.3 ± 0.7 |" in result.stdout  # printed too
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    grid = (out / "nsp=True" / "mrpc" / "results.md").read_text()  # each stage's own grid
    assert "**Best setting:** `learning_rate=0.0003`" in grid

    # Remove one fine-tuning run: only it runs again, and the table is the same.
    removed = out / "nsp=False" / "mrpc" / "learning_rate=0.0001,seed=1"
    for path in removed.iterdir():
        path.unlink()
    removed.rmdir()
    (out / "results.csv").unlink()
    pipeline, messages = sw.load_sweep(str(pipeline_file)), []
    extra = [a.removeprefix("--extra=") for a in args if a.startswith("--extra=")]
    assert not sw.launch(pipeline, out, trainer=trainer, extra=extra, echo=messages.append)
    assert messages[0] == "10 runs, 9 finished already, 1 to run."
    assert _relative(calls, out)[10:] == ["nsp=False/mrpc/learning_rate=0.0001,seed=1"]
    sw.tabulate_pipeline(pipeline, out)
    assert _csv_rows(out / "results.csv") == rows

    # Read back alone, from the files.
    for name in ("results.csv", "results.md"):
        (out / name).unlink()
    table = sw.tabulate_pipeline(pipeline, out)
    assert _csv_rows(out / "results.csv") == rows and len(_calls(calls)) == 11
    assert (out / "results.md").read_text() == md
    assert table[0].cells["MRPC acc"].best == "learning_rate=0.0003"


def test_a_failed_pretraining_skips_its_row_and_not_the_others(fake, tmp_path):
    trainer, calls, pipeline_file = fake
    out = tmp_path / "pipeline"
    pipeline = sw.load_sweep(f"{pipeline_file}:fail")
    messages = []
    failed = sw.launch(pipeline, out, trainer=trainer, parallel=2, echo=messages.append)
    bad = "nsp=False,learning_rate=0.05"
    assert failed[f"{bad}/pretrain"].startswith("exit code 3")
    skipped = {f"{bad}/mrpc/{run}" for run in FINETUNE_RUNS}
    assert {k for k, v in failed.items() if v == f"skipped: {bad}/pretrain failed"} == skipped
    assert len(failed) == 5 and len(_calls(calls)) == 2 + 1 + 8  # the others all ran
    assert sum("skipped" in m for m in messages) == 4
    table = sw.tabulate_pipeline(pipeline, out, failed)
    assert [t.status for t in table] == ["finished", "finished", "failed"]
    md = (out / "results.md").read_text()
    assert "| diverges | failed | failed | skipped: pretraining failed |" in md
    assert "| No NSP | 0.500 | 4.48 | 59.5 ± 0.7 |" in md

    # Through the command line: exit 1 naming the failures; only the failed row is tried again,
    # and the table says its pretraining did not finish.
    result = _cli(
        f"--sweep={pipeline_file}:fail", f"--sweep_dir={out}", f"--trainer={shlex.join(trainer)}"
    )
    assert result.returncode == 1
    assert "15 runs, 10 finished already, 5 to run." in result.stdout
    assert "5 run(s) failed" in result.stdout and f"{bad}/pretrain: exit code 3" in result.stdout
    assert _relative(calls, out)[11:] == [f"{bad}/pretrain"]


def test_dry_run_prints_every_command_in_order_and_runs_nothing(fake, tmp_path):
    _, calls, pipeline_file = fake
    out = tmp_path / "pipeline"
    result = _cli(f"--sweep={pipeline_file}", f"--sweep_dir={out}", "--dry_run")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()[1:]
    main = f"{sys.executable} -m bert_jax.main"
    assert commands[0] == (
        f"{main} --config=configs/pretrain.py:model=tiny --workdir={out}/nsp=True/pretrain "
        "--config.nsp=True"
    )
    assert commands[1] == (
        f"{main} --config=configs/glue.py:task=mrpc,model=tiny "
        f"--workdir={out}/nsp=True/mrpc/learning_rate=0.0001,seed=0 "
        f"--config.init_checkpoint={out}/nsp=True/pretrain --config.learning_rate=0.0001 "
        "--config.seed=0"
    )
    assert len(commands) == 10 and commands[5].endswith("--workdir=" + f"{out}/nsp=False/pretrain "
                                                        "--config.nsp=False")  # fmt: skip
    assert not out.exists() and not calls.exists()

    # Tabulated before anything ran: the rows say so.
    result = _cli(f"--sweep={pipeline_file}", f"--sweep_dir={out}", "--tabulate_only")
    assert result.returncode == 0, result.stderr
    assert "| No NSP | not finished | not finished | not run |" in result.stdout
    assert (out / "results.csv").exists() and not (out / "results.png").exists()


def test_tpu_vm_pipeline_fine_tunes_from_the_remote_pretraining(fake, tmp_path):
    pipeline = sw.load_sweep(str(fake[2]))
    printed = []
    sw.launch(
        pipeline, tmp_path, launcher="tpu_vm", remote_dir="gs://b/t/", dry_run=True,
        echo=printed.append,
    )  # fmt: skip
    script = str(REPO / "launch" / "tpu_vm.sh")
    assert printed[1] == shlex.join([
        "bash", script, "mount,train,collect", "--config=configs/pretrain.py:model=tiny",
        "--workdir=gs://b/t/nsp=True/pretrain", f"--collect_to={tmp_path}/nsp=True/pretrain",
        "--", "--config.nsp=True",
    ])  # fmt: skip
    assert printed[2] == shlex.join([
        "bash", script, "mount,train,collect", "--config=configs/glue.py:task=mrpc,model=tiny",
        "--workdir=gs://b/t/nsp=True/mrpc/learning_rate=0.0001,seed=0",
        f"--collect_to={tmp_path}/nsp=True/mrpc/learning_rate=0.0001,seed=0", "--",
        "--config.init_checkpoint=gs://b/t/nsp=True/pretrain", "--config.learning_rate=0.0001",
        "--config.seed=0",
    ])  # fmt: skip
    with pytest.raises(ValueError, match="--parallel=1"):
        sw.launch(pipeline, tmp_path, launcher="tpu_vm", parallel=2, remote_dir="gs://b")


def test_rows_sharing_a_pretraining_pretrain_once():
    mrpc = sw.Sweep("configs/glue.py:task=mrpc,model=tiny", [{"seed": [0]}], metric="m")
    pipeline = sw.Pipeline(
        "configs/pretrain.py:model=tiny",
        [sw.Row("a", {"nsp": False}), sw.Row("b", {"nsp": False}, finetune={"num_epochs": 1.0})],
        [sw.Stage("MRPC", mrpc)],
    )
    printed = []
    sw.launch(pipeline, "/s", dry_run=True, echo=printed.append)
    workdirs = [c.split("--workdir=")[1].split()[0] for c in printed[1:]]
    assert workdirs == ["/s/nsp=False/pretrain", "/s/nsp=False/MRPC/seed=0",
                        "/s/nsp=False/MRPC/num_epochs=1.0,seed=0"]  # fmt: skip
    assert "--config.num_epochs=1.0" in printed[3]
    sw.validate(pipeline)


def test_a_pretraining_column_a_run_lacks_shows_a_dash(tmp_path):
    """Rows with other objectives report other metrics (an LTR run has no MLM accuracy)."""
    stage = sw.Stage("MRPC", sw.Sweep("configs/glue.py:task=mrpc,model=tiny", [{"seed": [0]}], "m"))
    columns = {"MLM acc": "eval/mlm_accuracy", "LTR acc": "eval/lm_accuracy", "typo": "eval/x"}
    rows = [sw.Row("BERT", {"nsp": True}), sw.Row("LTR", {"objective": "ltr"})]
    pipeline = sw.Pipeline("configs/pretrain.py:model=tiny", rows, [stage], columns=columns)
    for name, results in (("nsp=True", '{"eval/mlm_accuracy": 0.7}'),
                          ("objective=ltr", '{"eval/lm_accuracy": 0.4}')):  # fmt: skip
        (tmp_path / name / "pretrain").mkdir(parents=True)
        (tmp_path / name / "pretrain" / "results.json").write_text(results)
    sw.tabulate_pipeline(pipeline, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "| BERT | 0.700 | - | - | not run |" in md and "| LTR | - | 0.400 | - | not run |" in md
    assert "No finished pretraining run reports ['typo']" in md


@pytest.mark.parametrize(
    "rows, stage, extra, match",
    [
        ([sw.Row("a"), sw.Row("a", {"nsp": False})], {}, [], "row labels.*'a'"),
        ([sw.Row("a"), sw.Row("b")], {}, [], r"rows \(pretrain, finetune\)"),
        ([sw.Row("a")], {"base_overrides": {"init_checkpoint": "/x"}}, [], "sets init_checkpoint"),
        ([sw.Row("a")], {}, ["mprc:--config.seed=1"], "no stage 'mprc'"),
        ([sw.Row("a", {"nsp": 3})], {}, [], "Run nsp=3"),
    ],
)
def test_bad_pipelines_fail_naming_the_problem(rows, stage, extra, match):
    sweep = sw.Sweep("configs/glue.py:task=mrpc,model=tiny", [{"seed": [0]}], "m", **stage)
    with pytest.raises(ValueError, match=match):
        pipeline = sw.Pipeline("configs/pretrain.py:model=tiny", rows, [sw.Stage("mrpc", sweep)])
        sw.validate(pipeline, extra)


# ------------------------------------------------------------------- the paper's tables


def _pretrain_overrides(pipeline, *fields):
    return [tuple(row.pretrain[f] for f in fields) for row in pipeline.rows]


def _stage_grid(pipeline):
    return {
        s.name: (s.sweep.config, s.sweep.metric, s.scale, len(s.sweep.runs()))
        for s in pipeline.stages
    }


@pytest.mark.parametrize("model", ["tiny", "base"])
def test_table_5_pretraining_tasks(model):
    pipeline = sw.load_sweep(f"configs/ablations/pretraining_tasks.py:model={model}")
    sw.validate(pipeline)  # every run's overrides build its config
    assert [r.label for r in pipeline.rows] == ["BERT", "No NSP", "LTR & No NSP", "+ BiLSTM"]
    ltr = {"objective": "ltr", "nsp": False, "model.causal": True}
    assert [dict(r.pretrain) for r in pipeline.rows] == [{"nsp": True}, {"nsp": False}, ltr, ltr]
    assert len(pipeline.pretrainings()) == 3  # + BiLSTM fine-tunes the LTR model
    assert [s.column for s in pipeline.stages] == ["MNLI-m", "QNLI", "MRPC", "SST-2", "SQuAD F1"]
    lrs, seeds = ([1e-4], 2) if model == "tiny" else ([5e-5, 4e-5, 3e-5, 2e-5], 3)
    assert pipeline.stages[2].sweep.config == f"configs/glue.py:task=mrpc,model={model}"
    assert pipeline.stages[2].sweep.metric == "best/dev/accuracy"  # the paper's MRPC column
    assert len(pipeline.stages[0].sweep.runs()) == len(lrs) * seeds
    assert pipeline.stages[0].sweep.axes[0].values == {"learning_rate": tuple(lrs)}
    assert pipeline.rows[0].paper["SQuAD F1"] == 88.5
    # "+ BiLSTM" runs where the fine-tuning config has the field: when another config gains it,
    # BILSTM_STAGES must list it.
    bilstm = pipeline.rows[3]
    for stage in pipeline.stages:
        config = load_config([f"--config={sw.resolve_config(stage.sweep.config)}"])
        assert ("bilstm_on_top" in config) == (stage.name in bilstm.stages), stage.name


@pytest.mark.parametrize("model", ["tiny", "base"])
def test_table_6_model_sizes(model):
    pipeline = sw.load_sweep(f"configs/ablations/model_sizes.py:model={model}")
    sw.validate(pipeline)
    sizes = _pretrain_overrides(pipeline, *(f"model.{f}" for f in ("num_layers", "hidden_size",
                                                                   "num_heads")))  # fmt: skip
    if model == "base":
        assert sizes == [(3, 768, 12), (6, 768, 3), (6, 768, 12), (12, 768, 12), (12, 1024, 16),
                         (24, 1024, 16)]  # fmt: skip
        assert [r.label for r in pipeline.rows][3] == "12/768/12"
        assert pipeline.rows[3].paper == {"LM ppl": 3.99, "MNLI-m": 84.4, "MRPC": 86.7,
                                          "SST-2": 92.9}  # fmt: skip
    else:
        assert sizes == [(1, 64, 1), (2, 64, 1), (2, 64, 2), (2, 128, 2), (4, 128, 2), (4, 192, 3)]
        assert all(not r.paper for r in pipeline.rows)
    for row in pipeline.rows:
        assert row.pretrain["model.intermediate_size"] == 4 * row.pretrain["model.hidden_size"]
    assert [s.name for s in pipeline.stages] == ["mnli", "mrpc", "sst2"]
    assert pipeline.stages[0].sweep.metric == "best/dev_matched/accuracy"
    (ppl,) = pipeline.columns.values()
    assert ppl({"eval/mlm_loss": math.log(3.99)}) == pytest.approx(3.99)


@pytest.mark.parametrize("model", ["tiny", "base"])
def test_table_8_masking(model):
    pipeline = sw.load_sweep(f"configs/ablations/masking.py:model={model},seeds=1")
    sw.validate(pipeline)
    rows = [
        (round(100 * mask), round(100 * (1 - mask - rnd)), round(100 * rnd))
        for mask, rnd in _pretrain_overrides(
            pipeline, "data.mask_token_ratio", "data.random_token_ratio"
        )
    ]
    # MASK / SAME / RND of the paper's Table 8, and the row labels that say them.
    assert rows == [(80, 10, 10), (100, 0, 0), (80, 0, 20), (80, 20, 0), (0, 20, 80), (0, 0, 100)]
    assert [r.label for r in pipeline.rows] == ["/".join(map(str, r)) for r in rows]
    grid = _stage_grid(pipeline)
    lr = 1 if model == "tiny" else 4
    assert grid == {
        "mnli": (f"configs/glue.py:task=mnli,model={model}", "best/dev_matched/accuracy", 100, lr),
        "ner": (f"configs/ner.py:mode=finetune,model={model}", "best/f1", 1, lr),
        "ner_feature": (f"configs/ner.py:mode=feature,model={model}", "best/f1", 1, 1),
    }
    assert pipeline.stages[2].sweep.base_overrides == {"feature.layers": "concat_last_four"}
    # Tiny pretrains every row at 1e-3 (3e-3 leaves the rows without SAME tokens untrained).
    tiny_rate = {"learning_rate": 1e-3} if model == "tiny" else {}
    assert pipeline.base_overrides == tiny_rate
    assert pipeline.rows[0].paper == {"MNLI-m": 84.2, "NER fine-tune": 95.4,
                                      "NER feature-based": 94.9}  # fmt: skip


def test_tpu_vm_pipeline_through_the_launch_script(tmp_path):
    """A fine-tuning run of a table through launch/tpu_vm.sh (dry run): the workers read the
    pretraining workdir through the bucket's mount."""
    pipeline = sw.load_sweep("configs/ablations/masking.py:model=tiny")
    printed = []
    sw.launch(pipeline, tmp_path, launcher="tpu_vm", remote_dir="gs://b/t8",
                       dry_run=True, echo=printed.append)  # fmt: skip
    finetune = shlex.split(printed[2])
    result = subprocess.run(
        finetune, capture_output=True, text=True, env={**os.environ, "DRY_RUN": "1"}, timeout=30
    )
    assert result.returncode == 0, result.stderr
    train = next(line for line in result.stdout.splitlines() if "bert_jax.main" in line)
    pretrain = "data.mask_token_ratio=0.8,data.random_token_ratio=0.1"
    assert f"--config.init_checkpoint=/gcs/b/t8/{pretrain}/pretrain" in train
    assert f"--workdir=/gcs/b/t8/{pretrain}/mnli/learning_rate=0.0001,seed=0" in train


@pytest.mark.slow
def test_real_tiny_pipeline_end_to_end(tmp_path):
    """A tiny pretraining run (20 steps on a small embedded corpus) fine-tuned on synthetic MRPC,
    through bert_jax.main: the fine-tuning starts from the pretraining workdir."""
    out = tmp_path / "pipeline"
    pipeline_file = tmp_path / "tiny_pipeline.py"
    one_row = PIPELINE_FILE.replace(', Row("No NSP", {"nsp": False})', "")
    pipeline_file.write_text(
        one_row.replace('[{"learning_rate": [1e-4, 3e-4]}, {"seed": [0, 1]}]', '[{"seed": [0]}]')
    )
    args = [
        f"--sweep={pipeline_file}",
        f"--sweep_dir={out}",
        *(f"--extra=pretrain:--config.{a}" for a in (
            "total_steps=20", "warmup_steps=2", "data.synthetic_documents=200",
            "eval_every_steps=20", "checkpoint_every_steps=20", "data.eval_batches=2",
            "batch_size=16")),
        *(f"--extra=mrpc:--config.{a}" for a in (
            "num_epochs=1.0", "synthetic_train_examples=64", "batch_size=16")),
    ]  # fmt: skip
    # One device per run (the suite's eight fake ones only slow small runs down).
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    command = [sys.executable, "-m", "bert_jax.sweep", *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (row,) = _csv_rows(out / "results.csv").values()
    assert row["pretraining"] == "finished" and row["MRPC acc/finished"] == "1"
    assert 0 <= float(row["MRPC acc"]) <= 100 and 0 < float(row["MLM acc"]) <= 1
    log = (out / "nsp=True" / "mrpc" / "seed=0" / "log.txt").read_text()
    assert f"Initialising from {out}/nsp=True/pretrain" in log
