"""GLUE fine-tuning end to end on the synthetic tasks, its submission files, and evaluation that
counts every example once on one process or two."""

import csv
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from bert_jax import pretrained
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.tasks.glue import get_task, read_split
from bert_jax.tasks.glue_synthetic import write_synthetic_glue
from bert_jax.tokenizers import train_sentencepiece
from tests.local_jobs import run_processes

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from configs import glue as glue_config  # noqa: E402


def test_unknown_task_fails_before_anything_runs():
    with pytest.raises(ValueError, match="Unknown GLUE task 'mnlii'; valid names: cola, sst2"):
        glue_config.get_config("task=mnlii")


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    """A random tiny BERT with a SentencePiece vocabulary of the synthetic GLUE text."""
    root = tmp_path_factory.mktemp("init")
    glue_dir = write_synthetic_glue(root / "glue", seed=0)
    texts = []
    for task in ("sst2", "mnli"):
        split = read_split(glue_dir, task, "train")
        texts += split.texts_a + (split.texts_b or [])
    tokenizer = train_sentencepiece(texts, str(root / "spm"), vocab_size=128)
    tokenizer.save(str(root / "tokenizer"))
    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=64)
    params = BertForPreTraining(cfg).init(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    pretrained.save(root / "ckpt", cfg, jax.device_get(params), root / "tokenizer")
    return str(root / "ckpt")


def run_glue(task, workdir, init, *overrides):
    cmd = [
        sys.executable,
        "-m",
        "bert_jax.main",
        f"--config=configs/glue.py:task={task},model=tiny",
        f"--workdir={workdir}",
        f"--config.init_checkpoint={init}",
        "--config.synthetic_train_examples=512",
        *overrides,
    ]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(pathlib.Path(workdir, "results.json").read_text())


@pytest.mark.slow
def test_sst2_fine_tune_learns_and_writes_a_valid_submission(init_checkpoint, tmp_path):
    # From random weights (no pretraining here): a higher rate, 4 epochs.
    results = run_glue(
        "sst2", tmp_path, init_checkpoint, "--config.learning_rate=1e-3", "--config.num_epochs=4"
    )
    assert results["best/dev/accuracy"] >= 0.9  # synthetic SST-2: sentiment set by a word

    # The dev metric of every epoch was logged, and the best parameters were kept.
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "dev/dev/accuracy" in r]) == 4  # one per epoch
    assert (tmp_path / "best" / "model_config.json").exists()

    # Submission: header, one row per test example in test order, the label vocabulary.
    test = read_split(tmp_path / "glue_data", "sst2", "test")
    with open(tmp_path / "submission" / "SST-2.tsv") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert table[0] == ["index", "prediction"]
    assert [r[0] for r in table[1:]] == test.indices
    assert {r[1] for r in table[1:]} <= set(get_task("sst2").label_names)


@pytest.mark.slow
def test_stsb_regression_and_mnli_two_dev_sets(init_checkpoint, tmp_path):
    results = run_glue("stsb", tmp_path / "stsb", init_checkpoint, "--config.num_epochs=1")
    assert set(results) >= {"best/dev/pearson", "best/dev/spearmanr"}
    with open(tmp_path / "stsb" / "submission" / "STS-B.tsv") as f:
        scores = [float(r[1]) for r in list(csv.reader(f, delimiter="\t"))[1:]]
    assert all(0.0 <= s <= 5.0 for s in scores)

    results = run_glue("mnli", tmp_path / "mnli", init_checkpoint, "--config.num_epochs=1")
    assert {"best/dev_matched/accuracy", "best/dev_mismatched/accuracy"} <= set(results)
    files = sorted(os.listdir(tmp_path / "mnli" / "submission"))
    assert files == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    # AX: the diagnostic set predicted by the fine-tuned MNLI model.
    run_glue("ax", tmp_path / "ax", tmp_path / "mnli")
    with open(tmp_path / "ax" / "submission" / "AX.tsv") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert len(table) - 1 == len(read_split(tmp_path / "mnli" / "glue_data", "ax", "test"))
    assert {r[1] for r in table[1:]} <= set(get_task("mnli").label_names)


PREDICT = textwrap.dedent(
    """
    import sys, json, jax, numpy as np
    if len(sys.argv) > 1:
        jax.distributed.initialize(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]))
    from bert_jax.finetune import predict
    from bert_jax.sharding import make_mesh, replicated
    mesh = make_mesh((-1, 1, 1))
    n = 13  # not a multiple of the batch of 4
    features = {
        "input_ids": np.arange(n, dtype=np.int32)[:, None].repeat(3, 1),
        "weights": np.ones(n, np.float32),
    }
    # A "model" that returns each row's first id, gathered to every process like the real
    # predict_fn: every example must come back exactly once, in order.
    model = jax.jit(lambda p, b: b["input_ids"][:, :1] * 1.0, out_shardings=replicated(mesh))
    out = predict(model, None, features, 4, mesh)
    print(json.dumps(out[:, 0].tolist()))
    """
)


def test_evaluation_counts_every_example_once_on_one_and_two_processes(free_port):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    single = subprocess.run(
        [sys.executable, "-c", PREDICT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert json.loads(single.stdout.splitlines()[-1]) == list(range(13))

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    commands = [[sys.executable, "-c", PREDICT, str(free_port), str(i)] for i in range(2)]
    for out in run_processes(commands, ROOT, env, timeout=300):
        assert json.loads(out.splitlines()[-1]) == list(range(13))


SWEEP = """
from bert_jax.sweep import Sweep

def get_sweep(arg=None):
    return Sweep(
        config="configs/glue.py:task=sst2,model=tiny",
        axes=[{"learning_rate": [1e-3, 3e-3]}, {"seed": [0, 1]}],
        metric="best/dev/accuracy",
    )
"""


@pytest.mark.slow
def test_a_real_sweep_of_four_tiny_runs_tabulates_and_skips_finished(init_checkpoint, tmp_path):
    (tmp_path / "sweep.py").write_text(SWEEP)
    cmd = [
        sys.executable, "-m", "bert_jax.sweep", f"--sweep={tmp_path / 'sweep.py'}",
        f"--sweep_dir={tmp_path / 'runs'}", "--parallel=2",
        f"--extra=--config.init_checkpoint={init_checkpoint}", "--extra=--config.num_epochs=1",
        "--extra=--config.synthetic_train_examples=256",
    ]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "4 runs, 0 finished already, 4 to run." in first.stdout
    table = (tmp_path / "runs" / "results.md").read_text()
    assert "±" in table and "best" in table.lower()
    csv_rows = list(csv.DictReader((tmp_path / "runs" / "results.csv").open()))
    assert len([r for r in csv_rows if r.get("seed") not in (None, "")]) == 4
    for png in ("plot_learning_rate.png", "loss_curves.png"):
        assert (tmp_path / "runs" / png).stat().st_size > 1000
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 runs, 4 finished already, 0 to run." in again.stdout


@pytest.mark.slow
def test_fine_tune_reads_tfds_glue(init_checkpoint, tmp_path):
    """--config.data_source=tfds: the TFDS glue/<task> path, under mock data (no download)."""
    import tensorflow_datasets as tfds

    from bert_jax.finetune import train_and_evaluate

    config = glue_config.get_config("task=rte,model=tiny")
    with config.unlocked():
        config.data_source = "tfds"
        config.init_checkpoint = init_checkpoint
        config.num_epochs = 1.0
        config.batch_size = 8
        config.mesh_shape = (-1, 1, 1)
    with tfds.testing.mock_data(num_examples=24):
        results = train_and_evaluate(config, str(tmp_path))
    assert 0.0 <= results["best/dev/accuracy"] <= 1.0
    with open(tmp_path / "submission" / "RTE.tsv") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert len(table) == 25 and {r[1] for r in table[1:]} <= {"entailment", "not_entailment"}


@pytest.mark.slow
def test_two_processes_fine_tune_and_predict(init_checkpoint, tmp_path, free_port):
    """Two local processes (2 devices each): training, the best-checkpoint save that every
    process joins, and test predictions written once."""
    cmd = [
        sys.executable, "-m", "bert_jax.main", "--config=configs/glue.py:task=sst2,model=tiny",
        f"--workdir={tmp_path}", f"--config.init_checkpoint={init_checkpoint}",
        "--config.synthetic_train_examples=256", "--config.num_epochs=2",
        f"--coordinator_address=127.0.0.1:{free_port}", "--num_processes=2",
    ]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    run_processes([cmd + [f"--process_id={i}"] for i in range(2)], ROOT, env)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "best/dev/accuracy" in results
    assert (tmp_path / "best" / "params").is_dir()
    with open(tmp_path / "submission" / "SST-2.tsv") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert len(rows) - 1 == len(read_split(tmp_path / "glue_data", "sst2", "test"))


@pytest.fixture(scope="module")
def squad_init_checkpoint(tmp_path_factory):
    """A random tiny BERT with a SentencePiece vocabulary of the synthetic SQuAD text."""
    from bert_jax.tasks import squad

    root = tmp_path_factory.mktemp("squad_init")
    data = squad.write_synthetic_squad(root / "squad", "2.0", seed=0, num_train=64, num_dev=16)
    split = squad.read_json(data, "2.0", "train")
    texts = [e.context for e in split.examples] + [e.question for e in split.examples]
    tokenizer = train_sentencepiece(texts, str(root / "spm"), vocab_size=128)
    tokenizer.save(str(root / "tokenizer"))
    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=128)
    params = BertForPreTraining(cfg).init(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    pretrained.save(root / "ckpt", cfg, jax.device_get(params), root / "tokenizer")
    return str(root / "ckpt")


@pytest.mark.slow
def test_squad_v2_on_two_processes_predicts_every_question_once(squad_init_checkpoint, tmp_path,
                                                                 free_port):  # fmt: skip
    """configs/squad.py end to end on two processes: the official metrics every epoch, and the
    prediction files equal to what one process computes from the best checkpoint for every window
    (none lost or predicted twice)."""
    from bert_jax.config_lib import load_config
    from bert_jax.tasks import get_family, squad
    from bert_jax.tokenizers import load_tokenizer

    cmd = [
        sys.executable, "-m", "bert_jax.main", "--config=configs/squad.py:version=2.0,model=tiny",
        f"--workdir={tmp_path}", f"--config.init_checkpoint={squad_init_checkpoint}",
        "--config.synthetic_train_examples=48", "--config.synthetic_dev_examples=24",
        "--config.max_seq_length=96", "--config.doc_stride=32", "--config.num_epochs=2",
        "--config.batch_size=16", "--config.eval_batch_size=16",
        f"--coordinator_address=127.0.0.1:{free_port}", "--num_processes=2",
    ]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    run_processes([cmd + [f"--process_id={i}"] for i in range(2)], ROOT, env)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in rows if "dev/f1" in r]
    assert len(dev) == 2 and {"dev/HasAns_f1", "dev/NoAns_f1", "dev/best_f1"} <= set(dev[0])
    dev_ids = [e.id for e in squad.read_json(tmp_path / "squad_data", "2.0", "dev").examples]
    files = tmp_path / "predictions" / "dev"
    for name in ("predictions.json", "nbest_predictions.json", "null_odds.json"):
        assert sorted(json.loads((files / name).read_text())) == sorted(dev_ids), name
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["best/total"] == len(dev_ids)

    # The same dev predictions from the best checkpoint, every window at once, in this process.
    config = load_config([a for a in cmd[3:] if a.startswith("--config")])
    family = get_family(config)
    dev_split = family.load(config, str(tmp_path))["dev"]
    features = family.featurize(
        "dev", dev_split, load_tokenizer(str(tmp_path / "tokenizer")), config
    )
    cfg, params = pretrained.load(tmp_path / "best")
    outputs = family.outputs(family.model(cfg), params, features.arrays)
    scores, write = family.evaluate("dev", dev_split, features, jax.device_get(outputs))
    write(str(tmp_path / "one_process"))
    for name in ("predictions.json", "null_odds.json"):
        expected = json.loads((tmp_path / "one_process" / name).read_text())
        got = json.loads((files / name).read_text())
        assert got.keys() == expected.keys()
        for qid, value in expected.items():
            assert got[qid] == pytest.approx(value, abs=1e-4), (name, qid)
    assert results["best/f1"] == pytest.approx(scores["dev/f1"], abs=1e-6)
