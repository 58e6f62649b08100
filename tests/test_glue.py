"""GLUE registry, metrics, readers, synthetic folder and submissions.

References: sklearn/scipy for the metrics, Hugging Face's GLUE processors (positional readers of
the real layout) and TFDS's feature metadata for the files and label order, hand-written rows for
the quirks.
"""

import collections
import csv
import logging
import warnings
import zipfile

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from bert_jax.tasks.glue import (
    TASKS,
    average_ranks,
    compute_metrics,
    get_task,
    load_tfds_split,
    read_split,
    write_submission,
    zip_submission,
)
from bert_jax.tasks.glue_synthetic import write_synthetic_glue

# The 11 files the GLUE server wants (REFERENCE.md section 4).
EXPECTED_SUBMISSION_FILES = {
    "CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv",
    "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv",
}  # fmt: skip

# ------------------------------------------------------------------------------- registry


def test_get_task_aliases_and_case():
    assert get_task("SST-2") is TASKS["sst2"]
    assert get_task("sts-b") is TASKS["stsb"]
    assert get_task("MNLI").dev_splits == ("dev_matched", "dev_mismatched")
    assert get_task("mnli").test_splits == ("test_matched", "test_mismatched")
    assert get_task("ax").predicted_by == "mnli"
    assert get_task("stsb").is_regression and not get_task("cola").is_pair


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="squad") as error:
        get_task("squad")
    for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"):
        assert name in str(error.value)


def test_registry_is_consistent():
    files = [f for t in TASKS.values() for f in t.submission_files.values()]
    assert sorted(files) == sorted(EXPECTED_SUBMISSION_FILES)
    for t in TASKS.values():
        assert t.main_metric in t.metric_names
        assert set(t.submission_files) <= set(t.splits)
        assert t.num_labels == max(len(t.label_names), 1)
        hash(t)  # Usable as a static argument or dict key.


# TFDS's positive class for the binary tasks, whose files and submissions use "0"/"1".
POSITIVE = {"cola": "acceptable", "sst2": "positive", "mrpc": "equivalent", "qqp": "duplicate",
            "wnli": "entailment"}  # fmt: skip


@pytest.mark.parametrize("name", list(TASKS))
def test_label_order_and_features_match_tfds(name):
    import tensorflow_datasets as tfds

    features = tfds.builder(f"glue/{name}").info.features
    t = TASKS[name]
    assert set(t.tfds_text_features) < set(features)
    if t.is_regression:
        return
    names = features["label"].names
    if name in POSITIVE:
        assert t.label_names == ("0", "1") and names[1] == POSITIVE[name]
    else:
        assert tuple(names) == t.label_names


# -------------------------------------------------------------------------------- metrics


def _random_inputs(name, rng, n):
    t = TASKS[name]
    if t.is_regression:  # Coarse grids so both sides have many ties (average ranks matter).
        return rng.integers(0, 11, n) / 2.0, rng.integers(0, 26, n) / 5.0
    return rng.integers(0, t.num_labels, n), rng.integers(0, t.num_labels, n)


def _sklearn_scipy_metrics(name, predictions, labels):
    reference = {
        "accuracy": lambda: sklearn.metrics.accuracy_score(labels, predictions),
        "f1": lambda: sklearn.metrics.f1_score(labels, predictions, zero_division=0.0),
        "matthews_corr": lambda: sklearn.metrics.matthews_corrcoef(labels, predictions),
        "pearson": lambda: scipy.stats.pearsonr(predictions, labels)[0],
        "spearmanr": lambda: scipy.stats.spearmanr(predictions, labels)[0],
    }
    return {metric: reference[metric]() for metric in TASKS[name].metric_names}


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn_and_scipy(name, seed):
    rng = np.random.default_rng(seed)
    predictions, labels = _random_inputs(name, rng, int(rng.integers(5, 300)))
    if seed == 2 and not TASKS[name].is_regression:  # Correlated, so the values are far from 0.
        predictions = np.where(rng.random(len(labels)) < 0.7, labels, predictions)
    got = compute_metrics(name, predictions, labels)
    assert list(got) == list(TASKS[name].metric_names)
    expected = _sklearn_scipy_metrics(name, predictions, labels)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-9, atol=1e-12)
    assert all(type(v) is float for v in got.values())


def test_average_ranks_match_scipy():
    x = np.random.default_rng(0).integers(0, 5, 50)
    np.testing.assert_array_equal(average_ranks(x), scipy.stats.rankdata(x))


@pytest.mark.parametrize(
    "predictions, labels",
    [([1, 1, 1, 1], [0, 1, 0, 1]), ([0, 1, 0, 1], [1, 1, 1, 1]), ([0, 0, 0], [0, 0, 0])],
)
def test_degenerate_classification_matches_sklearn(predictions, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the undefined cases.
        mcc = sklearn.metrics.matthews_corrcoef(labels, predictions)
        f1 = sklearn.metrics.f1_score(labels, predictions)
    assert compute_metrics("cola", predictions, labels) == {"matthews_corr": mcc}
    assert compute_metrics("mrpc", predictions, labels)["f1"] == f1


def test_constant_regression_is_zero_not_nan():
    # scipy returns nan here; 0.0 keeps best-checkpoint selection (max over evals) well defined.
    assert compute_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 3.0, 5.0]) == {
        "pearson": 0.0,
        "spearmanr": 0.0,
    }


def test_metrics_reject_logits_and_mismatched_lengths():
    with pytest.raises(ValueError, match="argmax"):
        compute_metrics("rte", np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        compute_metrics("rte", [0, 1], [0, 1, 1])


# -------------------------------------------------------------------- readers on real layouts

# Rows in the real layouts (copied or adapted from the GLUE files), quirks included: CoLA train/dev
# have no header, texts carry unbalanced quotes, MNLI dev has five annotator labels.
FIXTURES = {
    "CoLA/train.tsv": [
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.",
        "gj04\t0\t*\tThey drank the pub.",
        'cj99\t1\t\t"Mary, she said, left.',
    ],
    "CoLA/dev.tsv": ["gj04\t1\t\tThe sailors rode the breeze clear of the rocks."],
    "CoLA/test.tsv": ["index\tsentence", "0\tBill whistled past the house.", "1\tThe car honked."],
    "SST-2/train.tsv": [
        "sentence\tlabel",
        "hide new secretions from the parental units \t0",
        "that loves its characters and communicates something rather beautiful \t1",
    ],
    "SST-2/test.tsv": ["index\tsentence", "0\tuneasy mishmash of styles and genres ."],
    "MRPC/train.tsv": [
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        '1\t702876\t702977\tAmrozi accused his brother , whom he called " the witness " , of '
        'deliberately distorting his evidence .\tReferring to him as only " the witness " , Amrozi '
        "accused his brother of deliberately distorting his evidence .",
        "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway .\t"
        "Yucaipa bought Dominick 's in 1995 for $ 693 million .",
    ],
    "MRPC/test.tsv": [
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "0\t1089874\t1089925\tPCCW 's chief operating officer will report to Mr So .\t"
        "Current Chief Operating Officer Mike Butcher will report to So .",
    ],
    "STS-B/train.tsv": [
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t"
        "An air plane is taking off.\t5.000",
        "1\tmain-forums\tdeft-forum\t2014\t0010\tnone\tnone\t\"Well, it's a start.\t"
        'It "begins" here.\t0.600',
    ],
    "STS-B/test.tsv": [
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
        "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA girl is styling her hair.\t"
        "A girl is brushing her hair.",
    ],
    "QQP/train.tsv": [
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "133273\t213221\t213222\tHow is the life of a math student?\t"
        "Which level of prepration is enough for the exam jlpt5?\t0",
        # A question with a raw newline: one record split over two lines, both malformed.
        "402555\t536040\t536041\tHow do I play Pokemon GO in Korea?\tHow do I play",
        "Pokemon GO in China?\t1",
        "363029\t493340\t493341\tWhat are the best ways to learn French?\t"
        "How do I learn french genders?\t1",
    ],
    "QQP/test.tsv": [
        "id\tquestion1\tquestion2",
        "0\tWhy am I mentally very lonely?\tFind the remainder when 23^24 is divided by 24?",
    ],
    "MNLI/train.tsv": [
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
        "0\t31193\t31193n\tgovernment\t( ( Conceptually cream ) )\t( ( Product ) )\t(ROOT)\t"
        "(ROOT)\tConceptually cream skimming has two basic dimensions.\t"
        "Product and geography are what make cream skimming work. \tneutral\tneutral",
    ],
    "MNLI/dev_matched.tsv": [
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\t"
        "label5\tgold_label",
        "0\t63735\t63735n\tslate\t( x )\t( y )\t(ROOT)\t(ROOT)\tThe new rights are nice enough\t"
        "Everyone really likes the newest benefits \tneutral\tentailment\tneutral\tneutral\t"
        "neutral\tneutral",
        "1\t91383\t91383c\tgovernment\t( x )\t( y )\t(ROOT)\t(ROOT)\tThis site includes a list.\t"
        "The Government Executive articles are not on the site.\tcontradiction\tcontradiction\t"
        "contradiction\tcontradiction\tcontradiction\tcontradiction",
    ],
    "MNLI/test_matched.tsv": [
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2",
        "0\t31493\t31493\ttravel\t( x )\t( y )\t(ROOT)\t(ROOT)\tHierbas, ans seco, ans dulce.\t"
        "Hierbas is a name worth looking out for.",
    ],
    "QNLI/train.tsv": [
        "index\tquestion\tsentence\tlabel",
        "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it, most of "
        "the story was real.\tnot_entailment",
        "1\tWhat is the name of the village?\tThe village is called Hinton.\tentailment",
    ],
    "QNLI/test.tsv": ["index\tquestion\tsentence", "0\tWhat is Fordham?\tFordham is a school."],
    "RTE/train.tsv": [
        "index\tsentence1\tsentence2\tlabel",
        "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found "
        "in Iraq.\tnot_entailment",
        "1\tA place of sorrow, after Pope John Paul II died.\tPope Benedict XVI is the new "
        "leader.\tentailment",
    ],
    "RTE/test.tsv": ["index\tsentence1\tsentence2", "0\tMaude Hamilton is 43.\tHamilton is 43."],
    "WNLI/train.tsv": [
        "index\tsentence1\tsentence2\tlabel",
        "0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\t"
        "The carrot had a hole.\t1",
        "1\tJohn couldn't see the stage with Billy in front of him because he is so short.\t"
        "John is so short.\t1",
        "2\tThe police arrested all of the gang members.\tThe police were trying to stop the "
        "drug trade.\t0",
    ],
    "WNLI/test.tsv": [
        "index\tsentence1\tsentence2",
        "0\tMaude and Dora had seen the trains rushing across the prairie.\tThe trains were fast.",
        "1\tThe drain is clogged with hair. It has to be cleaned.\tThe hair has to be cleaned.",
    ],
    "diagnostic/diagnostic.tsv": [
        "index\tsentence1\tsentence2",
        "0\tThe cat sat on the mat.\tThe cat did not sit on the mat.",
        "1\tThe cat did not sit on the mat.\tThe cat sat on the mat.",
    ],
}


@pytest.fixture
def glue_dir(tmp_path):
    for name, lines in FIXTURES.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def _hf_examples(name, data_dir, split):
    """Hugging Face's positional GLUE processors: an independent reader of the same files."""
    from transformers.data.processors.glue import glue_processors

    hf_name = {"sst2": "sst-2", "stsb": "sts-b"}.get(name, name)
    if name == "mnli" and split.endswith("mismatched"):
        hf_name = "mnli-mm"
    kind = split.split("_")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # The processors are deprecated.
        processor = glue_processors[hf_name]()
        return getattr(processor, f"get_{kind}_examples")(str(data_dir / TASKS[name].dir_name))


CASES = [
    (name, split)
    for name, t in TASKS.items()
    for split, file in t.splits.items()
    if f"{t.dir_name}/{file}" in FIXTURES and name != "ax"
]


@pytest.mark.parametrize("name, split", CASES)
def test_reader_matches_huggingface_processors(glue_dir, name, split):
    t = TASKS[name]
    got = read_split(glue_dir, name, split)
    expected = _hf_examples(name, glue_dir, split)
    if name == "qqp" and split == "train":  # HF drops the short rows too, silently.
        assert [line for line, _ in got.skipped] == [3, 4]
    else:
        assert got.skipped == []
    assert got.texts_a == [e.text_a for e in expected]
    assert got.texts_b == ([e.text_b for e in expected] if t.is_pair else None)
    if split in t.test_splits:
        assert got.labels is None
        # Every GLUE test file starts with its index column.
        path = glue_dir / t.dir_name / t.splits[split]
        assert got.indices == [row[0] for row in _read_tsv(path)[1:]]
    elif t.is_regression:
        assert got.labels.dtype == np.float32
        np.testing.assert_allclose(got.labels, [float(e.label) for e in expected])
    else:
        assert got.labels.dtype == np.int32
        assert [t.label_names[i] for i in got.labels] == [e.label for e in expected]


def test_reader_keeps_stray_quotes_and_indices(glue_dir):
    cola = read_split(glue_dir, "cola", "train")
    assert cola.texts_a[2] == '"Mary, she said, left.' and cola.labels.tolist() == [1, 0, 1]
    assert cola.indices == ["0", "1", "2"]  # No index column: the row position.
    stsb = read_split(glue_dir, "sts-b", "train")
    assert stsb.texts_a[1] == "\"Well, it's a start." and stsb.texts_b[1] == 'It "begins" here.'
    assert stsb.indices == ["0", "1"]
    assert read_split(glue_dir, "qqp", "test").indices == ["0"]
    diagnostic = read_split(glue_dir, "ax", "test")
    assert diagnostic.labels is None and len(diagnostic) == 2
    assert diagnostic.texts_b[0] == "The cat did not sit on the mat."


def test_malformed_qqp_rows_are_skipped_and_reported(glue_dir, caplog):
    with caplog.at_level(logging.WARNING):
        split = read_split(glue_dir, "qqp", "train")
    assert len(split) == 2 and split.labels.tolist() == [0, 1]
    assert split.indices == ["133273", "363029"]
    assert split.skipped == [(3, "5 columns, expected 6"), (4, "2 columns, expected 6")]
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1 and "skipped 2 malformed rows" in warnings_logged[0].message


def test_bad_labels_and_scores_are_skipped(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE/dev.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tneutral\n"
    )
    (tmp_path / "STS-B").mkdir()
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    )
    rows = [f"{i}\tg\tf\ty\to\ts\ts\ta\tb\t{score}" for i, score in enumerate(["1.5", "x", "7"])]
    (tmp_path / "STS-B/dev.tsv").write_text("\n".join([header, *rows]) + "\n")
    rte = read_split(tmp_path, "rte", "dev")
    assert rte.labels.tolist() == [0] and rte.skipped[0][0] == 3 and "neutral" in rte.skipped[0][1]
    stsb = read_split(tmp_path, "stsb", "dev")
    assert stsb.labels.tolist() == [1.5] and [line for line, _ in stsb.skipped] == [3, 4]


def test_missing_files_and_bad_names_fail_clearly(glue_dir):
    with pytest.raises(FileNotFoundError, match=r"QNLI/dev\.tsv.*GLUE layout"):
        read_split(glue_dir, "qnli", "dev")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_split(glue_dir / "nowhere", "rte", "train")
    with pytest.raises(ValueError, match="dev_matched, dev_mismatched"):
        read_split(glue_dir, "mnli", "dev")
    (glue_dir / "RTE/dev.tsv").write_text("index\tpremise\thypothesis\tlabel\n")
    with pytest.raises(ValueError, match="sentence1"):
        read_split(glue_dir, "rte", "dev")


@pytest.mark.parametrize(
    "name, split", [("rte", "train"), ("mnli", "dev_mismatched"), ("stsb", "test"), ("ax", "test")]
)
def test_load_tfds_split_under_mock_data(name, split):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        got = load_tfds_split(name, split)
    t = TASKS[name]
    assert len(got) == 6 and len(got.indices) == 6 and all(isinstance(s, str) for s in got.texts_a)
    assert (got.texts_b is not None) == t.is_pair
    if split in t.test_splits:
        assert got.labels is None
    else:
        assert got.labels.dtype == np.int32 and got.labels.max() < t.num_labels


# ---------------------------------------------------------------------------- synthetic GLUE


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return write_synthetic_glue(
        tmp_path_factory.mktemp("glue"), seed=3, num_train=40, num_dev=9, num_test=7
    )


def test_synthetic_folder_round_trips(synthetic_dir):
    sizes = {"train": 40, "dev": 9, "test": 7}
    for name, t in TASKS.items():
        for split in t.splits:
            got = read_split(synthetic_dir, name, split)
            assert len(got) == sizes[split.split("_")[0]] and got.skipped == [], (name, split)
            if split in t.test_splits:
                assert got.labels is None and got.indices == [str(i) for i in range(len(got))]
            elif split == "train" and not t.is_regression:
                assert set(got.labels.tolist()) == set(range(t.num_labels)), name
            if name != "ax":  # The real layout: Hugging Face's positional readers agree.
                expected = _hf_examples(name, synthetic_dir, split)
                assert got.texts_a == [e.text_a for e in expected], (name, split)


def test_synthetic_is_deterministic(synthetic_dir, tmp_path):
    again = write_synthetic_glue(tmp_path / "a", seed=3, num_train=40, num_dev=9, num_test=7)
    other = write_synthetic_glue(tmp_path / "b", seed=4, num_train=40, num_dev=9, num_test=7)
    same = (synthetic_dir / "RTE/train.tsv").read_text()
    assert (again / "RTE/train.tsv").read_text() == same
    assert (other / "RTE/train.tsv").read_text() != same
    only = write_synthetic_glue(tmp_path / "c", seed=3, num_train=40, tasks=["RTE", "sts-b"])
    assert sorted(p.name for p in only.iterdir()) == ["RTE", "STS-B"]
    assert (only / "RTE/train.tsv").read_text() == same  # Each task has its own random stream.


def test_synthetic_tasks_are_learnable(tmp_path):
    """Simple independent models recover the labels: the tasks carry signal, not noise."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    directory = write_synthetic_glue(tmp_path, num_train=200, num_dev=100, tasks=["sst2", "stsb"])
    train, dev = read_split(directory, "sst2", "train"), read_split(directory, "sst2", "dev")
    vectorizer = CountVectorizer().fit(train.texts_a)
    model = LogisticRegression().fit(vectorizer.transform(train.texts_a), train.labels)
    assert model.score(vectorizer.transform(dev.texts_a), dev.labels) > 0.95
    stsb = read_split(directory, "stsb", "dev")
    overlap = [sum(x == y for x, y in zip(a.split(), b.split(), strict=True))
               for a, b in zip(stsb.texts_a, stsb.texts_b, strict=True)]  # fmt: skip
    assert scipy.stats.spearmanr(overlap, stsb.labels)[0] > 0.95


# ------------------------------------------------------------------------------- submissions


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.mark.parametrize("name", list(TASKS))
def test_write_submission(synthetic_dir, tmp_path, name):
    t = TASKS[name]
    for split, file_name in t.submission_files.items():
        indices = read_split(synthetic_dir, name, split).indices[::-1]  # Order is kept as given.
        rng = np.random.default_rng(0)
        if t.is_regression:
            predictions = rng.uniform(-1, 6, len(indices))
        else:
            predictions = rng.integers(0, t.num_labels, len(indices))
        path = write_submission(name, indices, predictions, tmp_path / file_name)
        rows = _read_tsv(path)
        assert rows[0] == ["index", "prediction"]
        assert [r[0] for r in rows[1:]] == indices
        column = [r[1] for r in rows[1:]]
        if t.is_regression:
            assert column == [f"{min(max(p, 0.0), 5.0):.3f}" for p in predictions]
        elif name in ("cola", "sst2", "mrpc", "qqp", "wnli"):
            assert column == [str(p) for p in predictions]
        else:
            allowed = {"mnli": ("entailment", "neutral", "contradiction"),
                       "ax": ("entailment", "neutral", "contradiction"),
                       "qnli": ("entailment", "not_entailment"),
                       "rte": ("entailment", "not_entailment")}[name]  # fmt: skip
            assert column == [allowed[p] for p in predictions]


def test_write_submission_rejects_bad_predictions(tmp_path):
    with pytest.raises(ValueError, match="argmax"):
        write_submission("rte", ["0", "1"], np.zeros((2, 2), np.int32), tmp_path / "RTE.tsv")
    with pytest.raises(ValueError, match="label indices"):
        write_submission("rte", ["0", "1"], [0, 2], tmp_path / "RTE.tsv")
    with pytest.raises(ValueError, match="label indices"):
        write_submission("cola", ["0"], [0.7], tmp_path / "CoLA.tsv")
    with pytest.raises(ValueError, match="finite"):
        write_submission("stsb", ["0", "1"], [1.0, np.nan], tmp_path / "STS-B.tsv")


def _write_all_submissions(synthetic_dir, run_root, skip=()):
    for name, t in TASKS.items():
        for split, file_name in t.submission_files.items():
            if file_name in skip:
                continue
            indices = read_split(synthetic_dir, name, split).indices
            predictions = np.ones(len(indices)) if t.is_regression else np.zeros(len(indices), int)
            # Runs keep their files in different places; the search is recursive.
            run_dir = run_root / (t.predicted_by or name) / "predictions"
            write_submission(name, indices, predictions, run_dir / file_name)


def test_zip_submission(synthetic_dir, tmp_path):
    _write_all_submissions(synthetic_dir, tmp_path / "runs")
    output = zip_submission([tmp_path / "runs"], tmp_path / "out/glue.zip")
    with zipfile.ZipFile(output) as archive:
        assert sorted(archive.namelist()) == sorted(EXPECTED_SUBMISSION_FILES)  # Flat: no dirs.
        assert archive.read("MNLI-mm.tsv").decode().startswith("index\tprediction\n")
    with pytest.raises(ValueError, match="more than once"):
        zip_submission([tmp_path / "runs", tmp_path / "runs/rte"], tmp_path / "again.zip")
    with pytest.raises(FileExistsError, match="glue.zip exists"):
        zip_submission([tmp_path / "runs"], tmp_path / "out/glue.zip")


def test_zip_command(synthetic_dir, tmp_path, capsys):
    from bert_jax.tasks.glue import main

    _write_all_submissions(synthetic_dir, tmp_path / "runs", skip={"WNLI.tsv"})
    out = tmp_path / "glue.zip"
    main(["--runs", str(tmp_path / "runs"), "--output", str(out), "--wnli_majority",
          "--data_dir", str(synthetic_dir)])  # fmt: skip
    assert f"Wrote {out}" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(EXPECTED_SUBMISSION_FILES)


def test_zip_submission_names_missing_files(synthetic_dir, tmp_path):
    _write_all_submissions(synthetic_dir, tmp_path, skip={"AX.tsv", "WNLI.tsv"})
    with pytest.raises(FileNotFoundError, match="AX.tsv, WNLI.tsv"):
        zip_submission([tmp_path], tmp_path / "glue.zip")


def test_zip_submission_wnli_majority(synthetic_dir, tmp_path):
    _write_all_submissions(synthetic_dir, tmp_path / "runs", skip={"WNLI.tsv"})
    with pytest.raises(ValueError, match="data_dir"):
        zip_submission([tmp_path / "runs"], tmp_path / "glue.zip", wnli_majority=True)
    output = zip_submission([tmp_path / "runs"], tmp_path / "glue.zip", True, synthetic_dir)
    train_labels = [row[3] for row in _read_tsv(synthetic_dir / "WNLI/train.tsv")[1:]]
    majority = collections.Counter(train_labels).most_common(1)[0][0]
    test_indices = [row[0] for row in _read_tsv(synthetic_dir / "WNLI/test.tsv")[1:]]
    with zipfile.ZipFile(output) as archive:
        assert len(archive.namelist()) == 11
        rows = [line.split("\t") for line in archive.read("WNLI.tsv").decode().splitlines()]
    assert rows == [["index", "prediction"], *([i, majority] for i in test_indices)]
