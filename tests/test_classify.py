"""Own classification / regression data (bert_jax.tasks.own_data, configs/classify.py).

Readers on hand-written TSV, CSV and JSON-lines fixtures with malformed rows; the errors for
unknown columns, unseen labels and bad settings; metrics against sklearn and scipy; the
prediction files; one end-to-end run of configs/classify.py through bert_jax.main.
"""

import csv
import json
import os
import pathlib
import sys

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bert_jax.models.bert import BertConfig
from bert_jax.tasks import Features, get_family, own_data
from tests.tiny_runs import run_main, tiny_checkpoint

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from configs import classify as classify_config  # noqa: E402

# Line 1 is the header. TSV: no quoting, so the quote in line 3 is text.
TRAIN_TSV = """id\tpremise\thypothesis\tlabel\tsource
a1\tA man sleeps.\tA person rests.\tentail\tweb
a2\tShe said "hi\tShe spoke.\tentail\tweb
a3\tToo few columns\tneutral
a4\t \tEmpty premise.\tneutral\tweb
a5\tThe sky is red.\tThe sky is blue.\tcontradict\tweb
a6\tNo label here.\tNone at all.\t\tweb
a7\tDogs bark.\tCats meow.\tneutral\tweb
"""
DEV_CSV = """id,premise,hypothesis,label
d1,"A man, tired, sleeps.",He rests.,entail
d2,"Two
lines.",One thing.,neutral
d3,Extra,column,neutral,oops
"""
TRAIN_JSONL = "\n".join(
    [
        '{"id": 1, "text": "good film", "score": 4.5}',
        '{"id": 2, "text": "bad film", "score": "1"}',
        "not json",
        "[1, 2]",
        '{"id": 5, "score": 3}',
        '{"id": 6, "text": "", "score": 3}',
        '{"id": 7, "text": "meh", "score": "n/a"}',
        "",
        '{"id": 9, "text": "fine", "score": null}',
        '{"id": 10, "text": 42, "score": 2}',
    ]
)


def read(path, split="train", **kw):
    columns = dict(text_columns=["premise", "hypothesis"], label_column="label", id_column="id")
    return own_data.read_file(path, split, **{**columns, **kw})


def test_tsv_reader_skips_and_counts_malformed_rows(tmp_path, caplog):
    (tmp_path / "train.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    split = read(tmp_path / "train.tsv")
    assert split.indices == ["a1", "a2", "a5", "a7"]
    assert split.texts_a[1] == 'She said "hi' and split.texts_b[3] == "Cats meow."
    assert list(split.labels) == ["entail", "entail", "contradict", "neutral"]  # raw strings
    assert split.skipped == [
        (4, "3 columns, expected 5"),
        (5, "empty text in premise"),
        (7, "empty label"),
    ]
    assert "skipped 3 malformed rows (first: line 4, 3 columns, expected 5)" in caplog.text


def test_csv_reader_quotes_and_row_positions(tmp_path):
    (tmp_path / "dev.csv").write_text(DEV_CSV, encoding="utf-8")
    split = read(tmp_path / "dev.csv", "dev", id_column=None)
    assert split.texts_a == ["A man, tired, sleeps.", "Two\nlines."]
    assert split.indices == ["0", "1"]  # positions among the data rows
    assert split.skipped == [(5, "5 columns, expected 4")]  # the quoted newline is line 3-4


def test_jsonl_reader_for_regression(tmp_path):
    (tmp_path / "train.jsonl").write_text(TRAIN_JSONL, encoding="utf-8")
    split = own_data.read_file(
        tmp_path / "train.jsonl", "train", text_columns=["text"], label_column="score",
        id_column="id", regression=True,
    )  # fmt: skip
    assert split.indices == ["1", "2", "10"] and split.texts_b is None
    assert split.texts_a == ["good film", "bad film", "42"]
    np.testing.assert_array_equal(split.labels, np.float32([4.5, 1.0, 2.0]))
    assert split.skipped == [
        (3, "invalid JSON (Expecting value)"),
        (4, "a JSON list, not an object"),
        (5, "no text"),
        (6, "empty text in text"),
        (7, "label 'n/a' is not a number"),
        (9, "empty label"),
    ]


def test_unknown_columns_are_named_with_the_available_ones(tmp_path):
    (tmp_path / "train.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column 'sentence'; the available columns are "
                       r"\['id', 'premise', 'hypothesis', 'label', 'source'\]"):  # fmt: skip
        read(tmp_path / "train.tsv", text_columns=["sentence"])
    (tmp_path / "train.jsonl").write_text(TRAIN_JSONL, encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column 'label'.*\['id', 'text', 'score'\]"):
        read(tmp_path / "train.jsonl", text_columns=["text"])
    # A test file needs no label column.
    assert read(tmp_path / "train.tsv", "test", labelled=False).labels is None
    with pytest.raises(ValueError, match="cannot tell the format from '.txt'"):
        (tmp_path / "data.txt").write_text("a\n")
        read(tmp_path / "data.txt")


def test_labels_are_inferred_sorted_or_given_and_never_silently_wrong(tmp_path):
    assert own_data.infer_label_names(["b", "a", "b"]) == ("a", "b")
    assert own_data.infer_label_names(["10", "2", "-1"]) == ("-1", "2", "10")
    (tmp_path / "train.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    raw = read(tmp_path / "train.tsv")
    indexed = own_data.index_labels(raw, ("contradict", "entail", "neutral"), "train.tsv")
    np.testing.assert_array_equal(indexed.labels, [1, 1, 0, 2])
    with pytest.raises(ValueError, match=r"labels 'entail' \(2 rows\), 'contradict' \(1 rows\) "
                       r"are not in the label set \['neutral', 'x'\]"):  # fmt: skip
        own_data.index_labels(raw, ("neutral", "x"), "train.tsv")


def own_config(tmp_path, **overrides):
    config = classify_config.get_config("model=tiny")
    with config.unlocked():
        config.data_source = "files"
        config.data_dir = str(tmp_path)
        config.text_columns, config.label_column, config.id_column = (
            "premise,hypothesis",
            "label",
            "id",
        )
        config.update(overrides)
    return config


def test_dev_labels_unseen_in_training_fail_by_name(tmp_path):
    (tmp_path / "train.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    (tmp_path / "dev.csv").write_text(DEV_CSV + "d4,A,B,unknown\nd5,C,D,unknown\n")
    config = own_config(tmp_path)
    family = get_family(config)
    expected = (
        r"dev.csv: labels 'unknown' \(2 rows\) are not in the label set "
        r"\['contradict', 'entail', 'neutral'\].*--config.labels"
    )
    with pytest.raises(ValueError, match=expected):
        family.load(config, str(tmp_path))
    # Given in full, in index order, they load (an output the training file never trains).
    config = own_config(tmp_path, labels="neutral,entail,contradict,unknown")
    family = get_family(config)
    splits = family.load(config, str(tmp_path))
    np.testing.assert_array_equal(splits["dev"].labels, [1, 0, 3, 3])
    assert family.model(BertConfig.from_name("tiny")).num_labels == 4


def test_files_are_found_or_named(tmp_path):
    config = own_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"No train file in .*train.\{tsv,csv,jsonl\}"):
        own_data.OwnData(config).files()
    (tmp_path / "train.tsv").write_text(TRAIN_TSV)
    (tmp_path / "train.csv").write_text(DEV_CSV)
    with pytest.raises(ValueError, match=r"holds \['train.tsv', 'train.csv'\]: keep one train"):
        own_data.OwnData(config).files()
    os.remove(tmp_path / "train.csv")
    (tmp_path / "dev.csv").write_text(DEV_CSV)
    files = own_data.OwnData(config).files()
    assert files == {"train": tmp_path / "train.tsv", "dev": tmp_path / "dev.csv"}  # no test
    elsewhere = tmp_path / "elsewhere.tsv"
    elsewhere.write_text(TRAIN_TSV)
    config = own_config(tmp_path, data_dir=None, train_file=str(elsewhere), dev_file=str(elsewhere))
    assert own_data.OwnData(config).files() == {"train": elsewhere, "dev": elsewhere}
    with pytest.raises(ValueError, match="No data: set --config.data_dir"):
        own_data.OwnData(own_config(tmp_path, data_dir=None)).files()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(text_columns="a,b,c"), "give one text column, or two"),
        (dict(task_type="ranking"), "Unknown config.task_type 'ranking'"),
        (dict(metrics="accuracy,pearson"), r"metrics \['pearson'\] do not apply to classif"),
        (dict(metrics="f1", labels="a,b,c"), "f1 is the binary F1 of the second label"),
        (dict(labels="a"), "needs two or more"),
        (dict(labels="a,b,a"), "names a label twice"),
        (dict(task_type="regression", labels="a,b"), "leave it empty for regression"),
    ],
)
def test_bad_settings_fail_by_name(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_family(own_config(tmp_path, **overrides))


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_sklearn_and_scipy(tmp_path, seed):
    rng = np.random.default_rng(seed)
    labels, predictions = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    data = own_data.OwnData(own_config(tmp_path, metrics="f1,accuracy,matthews_corr", labels="n,p"))
    scores = data.scores(predictions, labels)
    assert scores == pytest.approx(
        {
            "f1": f1_score(labels, predictions),
            "accuracy": accuracy_score(labels, predictions),
            "matthews_corr": matthews_corrcoef(labels, predictions),
        }
    )
    assert data.main_metric == "dev/dev/f1"
    x, y = rng.normal(size=40), rng.normal(size=40)
    data = own_data.OwnData(own_config(tmp_path, task_type="regression"))
    assert data.scores(x, y) == pytest.approx(
        {"pearson": stats.pearsonr(x, y)[0], "spearmanr": stats.spearmanr(x, y)[0]}
    )


def test_family_writes_label_names_for_dev_and_test(tmp_path):
    (tmp_path / "train.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    (tmp_path / "dev.csv").write_text(DEV_CSV, encoding="utf-8")
    (tmp_path / "test.csv").write_text("id,premise,hypothesis\nt1,A,B\nt2,C,D\n")
    config = own_config(tmp_path)
    family = get_family(config)
    splits = family.load(config, str(tmp_path))
    assert family.name == "own/classification" and family.main_metric == "dev/dev/accuracy"
    logits = np.array([[0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])  # entail, contradict
    scores, write = family.evaluate("dev", splits["dev"], Features({}), {"logits": logits})
    assert scores == {"dev/dev/accuracy": 0.5}
    write(str(tmp_path / "predictions"))
    with open(tmp_path / "predictions" / "predictions.tsv", newline="") as f:
        assert list(csv.reader(f, delimiter="\t")) == [
            ["id", "prediction", "label"], ["d1", "entail", "entail"],
            ["d2", "contradict", "neutral"],
        ]  # fmt: skip
    (path,) = family.write_test("test", splits["test"], Features({}), {"logits": logits}, tmp_path)
    assert path == str(tmp_path / "submission" / "test_predictions.tsv")
    with open(path, newline="") as f:
        assert list(csv.reader(f, delimiter="\t")) == [
            ["id", "prediction"], ["t1", "entail"], ["t2", "contradict"]
        ]  # fmt: skip


def test_example_files_read_back_clean(tmp_path):
    for task_type, ext in (("classification", "csv"), ("regression", "jsonl")):
        directory = own_data.write_example_files(tmp_path / task_type, task_type, num_train=40)
        config = classify_config.get_config(f"model=tiny,task_type={task_type}")
        data = own_data.OwnData(config)
        with config.unlocked():
            config.data_source, config.data_dir = "files", str(directory)
        splits = data.load(config, str(tmp_path))
        assert sorted(p.name for p in data.files().values()) == sorted(
            f"{s}.{ext}" for s in own_data.SPLITS
        )
        assert len(splits["train"]) == 40 and not any(s.skipped for s in splits.values())
        assert splits["test"].labels is None
        if task_type == "classification":
            assert data.label_names == ("negative", "positive")
        else:
            assert set(np.unique(splits["train"].labels)) <= {0.0, 2.5, 5.0}


# ------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    """Generated example files, and a random tiny BERT with a vocabulary of their reviews."""
    root = tmp_path_factory.mktemp("init")
    data_dir = own_data.write_example_files(root / "data", num_train=64, num_dev=32, num_test=16)
    with open(data_dir / "train.csv", newline="") as f:
        texts = [row["review"] for row in csv.DictReader(f)]
    return tiny_checkpoint(root, texts), data_dir


@pytest.mark.slow
def test_own_data_fine_tune_end_to_end(example_files, tmp_path):
    checkpoint, data_dir = example_files
    run_main(
        "configs/classify.py:model=tiny", tmp_path, f"--config.init_checkpoint={checkpoint}",
        "--config.data_source=files", f"--config.data_dir={data_dir}",
        "--config.text_columns=review", "--config.label_column=sentiment",
        "--config.metrics=f1,accuracy", "--config.labels=negative,positive",
        "--config.max_seq_length=32", "--config.batch_size=16", "--config.num_epochs=1",
        "--config.log_every_steps=2",
    )  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "dev/dev/f1" in r]
    assert [r["step"] for r in evals] == [4] and 0 <= evals[0]["dev/dev/accuracy"] <= 1
    assert (
        json.loads((tmp_path / "results.json").read_text())["best/dev/f1"] == evals[0]["dev/dev/f1"]
    )
    with open(data_dir / "test.csv", newline="") as f:
        test_ids = [row["id"] for row in csv.DictReader(f)]
    with open(tmp_path / "submission" / "test_predictions.tsv", newline="") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert table[0] == ["id", "prediction"] and [r[0] for r in table[1:]] == test_ids
    assert {r[1] for r in table[1:]} <= {"negative", "positive"}
    with open(tmp_path / "predictions" / "dev" / "predictions.tsv", newline="") as f:
        assert len(list(csv.reader(f, delimiter="\t"))) == 1 + 32
