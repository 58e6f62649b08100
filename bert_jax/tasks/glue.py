"""GLUE: the task registry, the readers (GLUE folder and TFDS), the metrics exactly as GLUE scores
them, and test-server submissions. The classification family (``tasks/classification.py``) runs
these tasks on the fine-tuning loop; ``glue_synthetic.py`` writes the embedded synthetic folder.

Label convention: ``Task.label_names[i]`` is the string that label index ``i`` stands for in the
GLUE files and in a submission. The order is the one TFDS ``glue/<task>`` uses, so label indices
from :func:`read_split` and :func:`load_tfds_split` agree:

* CoLA, SST-2, MRPC, QQP, WNLI: ``("0", "1")`` (1 = acceptable / positive / paraphrase /
  duplicate / entailment).
* RTE, QNLI: ``("entailment", "not_entailment")``.
* MNLI and AX (the diagnostic set, predicted by the MNLI model): ``("entailment", "neutral",
  "contradiction")``.
* STS-B: regression, ``num_labels == 1``, no label names; scores are floats in [0, 5].

MNLI has two dev sets: call ``compute_metrics("mnli", ...)`` once per entry of
``Task.dev_splits`` and prefix the result with the split name (``dev_matched/accuracy``). The best
checkpoint is picked on ``Task.main_metric`` of ``Task.dev_splits[0]`` (MNLI: matched accuracy).

Usage::

    split = read_split("glue_data", "mrpc", "dev")   # split.texts_a, split.texts_b, split.labels
    task = get_task("sts-b")
    compute_metrics("stsb", predictions, labels)  # {"pearson": ..., "spearmanr": ...}
    write_submission("stsb", split.indices, predictions, "run/STS-B.tsv")
    zip_submission(["runs/"], "submission.zip", wnli_majority=True, data_dir="glue_data")
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SUBMISSION_HEADER = ("index", "prediction")
BINARY = ("0", "1")
TWO_WAY_NLI = ("entailment", "not_entailment")
THREE_WAY_NLI = ("entailment", "neutral", "contradiction")
_STANDARD_SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}


@dataclasses.dataclass(frozen=True)
class Task:
    """One GLUE task: where its files are, how to read them, how it is scored and submitted.

    Attributes:
      name: registry key, also the TFDS ``glue/<name>`` config.
      dir_name: folder under the GLUE data directory (``SST-2``, ``diagnostic``, ...).
      num_labels: number of classes; 1 means regression (STS-B).
      label_names: the label strings in the files and the submission, in label-index order.
      text_columns: header names of the one or two text columns (first sentence first).
      label_column: header name of the label column in train/dev files.
      index_column: header name of the example id in test files (written to submissions).
      splits: split name -> file name inside ``dir_name``.
      submission_files: test split -> file name in the submission zip.
      metric_names: keys returned by :func:`compute_metrics`.
      main_metric: the metric that picks the best checkpoint (on ``dev_splits[0]``).
      tfds_text_features: the text feature names of TFDS ``glue/<name>``.
      headerless_columns: column names of the train/dev files that have no header (CoLA only).
      predicted_by: the task whose fine-tuned model predicts this one (AX: ``"mnli"``).
    """

    name: str
    dir_name: str
    num_labels: int
    label_names: tuple[str, ...]
    text_columns: tuple[str, ...]
    label_column: str
    index_column: str
    splits: Mapping[str, str] = dataclasses.field(hash=False)
    submission_files: Mapping[str, str] = dataclasses.field(hash=False)
    metric_names: tuple[str, ...]
    main_metric: str
    tfds_text_features: tuple[str, ...]
    headerless_columns: tuple[str, ...] | None = None
    predicted_by: str | None = None

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.splits if s.startswith("dev"))

    @property
    def test_splits(self) -> tuple[str, ...]:
        return tuple(self.submission_files)


def _task(name, dir_name, labels, text_columns, label_column, tfds_text, metrics, main, files,
          splits=None, index_column="index", **kwargs) -> Task:  # fmt: skip
    """Shorthand for the table below: positional in the order of the columns that vary most."""
    return Task(
        name=name,
        dir_name=dir_name,
        num_labels=max(len(labels), 1),
        label_names=labels,
        text_columns=text_columns,
        label_column=label_column,
        index_column=index_column,
        splits=dict(splits or _STANDARD_SPLITS),
        submission_files=files,
        metric_names=metrics,
        main_metric=main,
        tfds_text_features=tfds_text,
        **kwargs,
    )


_PAIR = ("sentence1", "sentence2")
_NLI_TFDS = ("premise", "hypothesis")
_MNLI_SPLITS = {
    "train": "train.tsv",
    "dev_matched": "dev_matched.tsv",
    "dev_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}
_ACC = ("accuracy",)

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _task("cola", "CoLA", BINARY, ("sentence",), "label", ("sentence",),
              ("matthews_corr",), "matthews_corr", {"test": "CoLA.tsv"},
              headerless_columns=("source", "label", "original_label", "sentence")),
        _task("sst2", "SST-2", BINARY, ("sentence",), "label", ("sentence",),
              _ACC, "accuracy", {"test": "SST-2.tsv"}),
        _task("mrpc", "MRPC", BINARY, ("#1 String", "#2 String"), "Quality", _PAIR,
              ("f1", "accuracy"), "f1", {"test": "MRPC.tsv"}),
        _task("stsb", "STS-B", (), _PAIR, "score", _PAIR,
              ("pearson", "spearmanr"), "spearmanr", {"test": "STS-B.tsv"}),
        _task("qqp", "QQP", BINARY, ("question1", "question2"), "is_duplicate",
              ("question1", "question2"), ("f1", "accuracy"), "f1", {"test": "QQP.tsv"},
              index_column="id"),
        _task("mnli", "MNLI", THREE_WAY_NLI, _PAIR, "gold_label", _NLI_TFDS, _ACC, "accuracy",
              {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
              splits=_MNLI_SPLITS),
        _task("qnli", "QNLI", TWO_WAY_NLI, ("question", "sentence"), "label",
              ("question", "sentence"), _ACC, "accuracy", {"test": "QNLI.tsv"}),
        _task("rte", "RTE", TWO_WAY_NLI, _PAIR, "label", _PAIR, _ACC, "accuracy",
              {"test": "RTE.tsv"}),
        _task("wnli", "WNLI", BINARY, _PAIR, "label", _PAIR, _ACC, "accuracy",
              {"test": "WNLI.tsv"}),
        # The diagnostic set is test-only; the GLUE server scores it with R3 (multi-class MCC).
        _task("ax", "diagnostic", THREE_WAY_NLI, _PAIR, "label", _NLI_TFDS,
              ("matthews_corr",), "matthews_corr", {"test": "AX.tsv"},
              splits={"test": "diagnostic.tsv"}, predicted_by="mnli"),
    )
}  # fmt: skip

SUBMISSION_FILES: tuple[str, ...] = tuple(
    f for t in TASKS.values() for f in t.submission_files.values()
)
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "diagnostic": "ax"}


def get_task(name: str) -> Task:
    """The task called ``name``, case-insensitive; ``"SST-2"`` and ``"STS-B"`` work too.

    Example::

        get_task("MNLI").dev_splits  # ("dev_matched", "dev_mismatched")
    """
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}; valid names: {', '.join(TASKS)}.")
    return TASKS[key]


# ----------------------------------------------------------------------------------- readers

_LAYOUT_HELP = (
    "expected the standard GLUE layout <data_dir>/{CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI,"
    "diagnostic}/ with train.tsv, dev.tsv, test.tsv (MNLI: dev_matched.tsv, dev_mismatched.tsv, "
    "test_matched.tsv, test_mismatched.tsv; diagnostic/diagnostic.tsv)"
)


@dataclasses.dataclass
class GlueSplit:
    """The examples of one split, in file order.

    Attributes:
      texts_a: first sentences.
      texts_b: second sentences, None for single-sentence tasks (CoLA, SST-2).
      labels: int32 label indices (float32 scores for STS-B); None when the file has no labels.
      indices: the file's index column ("id" for QQP), else the row position; submissions use it.
      skipped: (line number, reason) of every malformed row left out.
    """

    task: str
    split: str
    texts_a: list[str]
    texts_b: list[str] | None
    labels: np.ndarray | None
    indices: list[str]
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts_a)


def split_path(data_dir: str | os.PathLike, task: str, split: str) -> Path:
    """``<data_dir>/<Task.dir_name>/<file>`` of a split, e.g. ``glue/MNLI/dev_matched.tsv``."""
    t = _task_with_split(task, split)
    return Path(data_dir) / t.dir_name / t.splits[split]


def _task_with_split(task: str, split: str) -> Task:
    t = get_task(task)
    if split not in t.splits:
        raise ValueError(f"{t.name} has no split {split!r}; valid splits: {', '.join(t.splits)}.")
    return t


def _parse_label(t: Task, value: str) -> tuple[float | int | None, str]:
    """(label, "") or (None, why it is not a label)."""
    if not t.is_regression:
        if value in t.label_names:
            return t.label_names.index(value), ""
        return None, f"unknown label {value!r} (expected one of {t.label_names})"
    try:
        score = float(value)
    except ValueError:
        return None, f"unparsable score {value!r}"
    if not (math.isfinite(score) and 0.0 <= score <= 5.0):
        return None, f"score {value!r} outside [0, 5]"
    return score, ""


def read_split(data_dir: str | os.PathLike, task: str, split: str) -> GlueSplit:
    """Reads ``split`` of ``task`` from a GLUE folder, skipping (and recording) malformed rows.

    Columns are found by header name, except in CoLA train/dev, which have no header. Rows with the
    wrong number of columns, an unknown label or an unparsable score are left out, listed in
    ``GlueSplit.skipped`` and summarised in one warning (real QQP train has a few).

    Example::

        dev = read_split("glue_data", "mnli", "dev_matched")
        len(dev), dev.labels[:3]  # label indices into get_task("mnli").label_names
    """
    t = get_task(task)
    path = split_path(data_dir, task, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {_LAYOUT_HELP}.")
    is_test = split in t.test_splits
    texts: list[list[str]] = [[] for _ in t.text_columns]
    labels: list[float | int] = []
    indices: list[str] = []
    skipped: list[tuple[int, str]] = []
    # "utf-8-sig" drops a byte-order mark; QUOTE_NONE because GLUE texts hold unbalanced quotes.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = t.headerless_columns if t.headerless_columns and not is_test else next(reader, [])
        required = [*t.text_columns] if is_test else [*t.text_columns, t.label_column]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: columns {missing} not in the header {columns}; is this the {t.name} "
                f"{split} file? ({_LAYOUT_HELP})"
            )
        text_positions = [columns.index(c) for c in t.text_columns]
        label_position = columns.index(t.label_column) if t.label_column in columns else None
        index_position = columns.index(t.index_column) if t.index_column in columns else None
        for row in reader:
            if len(row) != len(columns):
                skipped.append((reader.line_num, f"{len(row)} columns, expected {len(columns)}"))
                continue
            if label_position is not None:
                label, why = _parse_label(t, row[label_position])
                if label is None:
                    skipped.append((reader.line_num, why))
                    continue
                labels.append(label)
            for column, position in zip(texts, text_positions, strict=True):
                column.append(row[position])
            indices.append(row[index_position] if index_position is not None else str(len(indices)))
    if skipped:
        line, why = skipped[0]
        logger.warning(
            "%s: skipped %d malformed rows (first: line %d, %s); see GlueSplit.skipped.",
            path, len(skipped), line, why,
        )  # fmt: skip
    return GlueSplit(
        task=t.name,
        split=split,
        texts_a=texts[0],
        texts_b=texts[1] if t.is_pair else None,
        labels=_labels_array(t, labels) if label_position is not None else None,
        indices=indices,
        skipped=skipped,
    )


def _labels_array(t: Task, labels: Sequence) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32 if t.is_regression else np.int32)


def load_tfds_split(
    task: str, split: str, data_dir: str | None = None, download: bool = False
) -> GlueSplit:
    """Reads ``split`` of TFDS ``glue/<task>`` (prepared in ``data_dir``) into a :class:`GlueSplit`.

    Split names are this package's (``dev``, ``dev_matched``...), mapped to TFDS's
    (``validation``, ``validation_matched``...). Test labels (-1 in TFDS) become None. Nothing is
    downloaded unless ``download=True``. Imports tensorflow_datasets (and TensorFlow) on first call.

    Example::

        with tfds.testing.mock_data(num_examples=8):
            load_tfds_split("rte", "train")
    """
    import tensorflow_datasets as tfds  # Lazy: importing TensorFlow costs seconds and 600 MB.

    t = _task_with_split(task, split)
    dataset = tfds.load(
        f"glue/{t.name}",
        split=split.replace("dev", "validation"),
        data_dir=data_dir,
        download=download,
        shuffle_files=False,
    )
    texts: list[list[str]] = [[] for _ in t.tfds_text_features]
    labels, indices = [], []
    for example in tfds.as_numpy(dataset):
        for column, feature in zip(texts, t.tfds_text_features, strict=True):
            column.append(example[feature].decode("utf-8"))
        labels.append(example["label"])
        indices.append(str(example["idx"]))
    return GlueSplit(
        task=t.name,
        split=split,
        texts_a=texts[0],
        texts_b=texts[1] if t.is_pair else None,
        labels=None if split in t.test_splits else _labels_array(t, labels),
        indices=indices,
    )


# ----------------------------------------------------------------------------------- metrics


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of exact matches."""
    return float(np.mean(predictions == labels))


def f1_positive(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of class 1; 0.0 when neither side has a positive (as sklearn's default)."""
    tp = np.sum((predictions == 1) & (labels == 1))
    wrong = np.sum(predictions != labels)
    denominator = 2 * tp + wrong
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_corr(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K, as sklearn computes it).

    0.0 when either side is constant (the correlation is undefined there; sklearn returns 0.0).
    """
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    y_true, y_pred = np.split(encoded, [len(labels)])
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (y_true, y_pred), 1.0)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), confusion.sum()
    cov_true_pred = correct * total - true_counts @ pred_counts
    cov_true = total**2 - true_counts @ true_counts
    cov_pred = total**2 - pred_counts @ pred_counts
    if cov_true * cov_pred == 0:
        return 0.0
    return float(cov_true_pred / np.sqrt(cov_true * cov_pred))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; 0.0 for a constant input (scipy returns nan, which breaks best-of selection)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(np.clip(x @ y / denominator, -1.0, 1.0)) if denominator > 0 else 0.0


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank (scipy.stats.rankdata 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Each run of equal values gets the mean of the positions it spans.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearmanr(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


# Every metric by the name it has in Task.metric_names and in metrics.jsonl.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1_positive,
    "matthews_corr": matthews_corr,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


def compute_metrics(task: str, predictions: Sequence | np.ndarray, labels: Sequence | np.ndarray
                    ) -> dict[str, float]:  # fmt: skip
    """GLUE metrics of ``predictions`` against ``labels`` for ``task``.

    Classification predictions and labels are label indices (argmax of the logits); STS-B ones are
    floats. For MNLI call once per dev split (see the module docstring).

    Example::

        compute_metrics("mrpc", [1, 0, 1], [1, 1, 1])  # {"f1": 0.8, "accuracy": 0.667}
    """
    t = get_task(task)
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape or predictions.ndim != 1 or not len(labels):
        raise ValueError(
            f"{t.name}: predictions {predictions.shape} and labels {labels.shape} must be equal, "
            "non-empty 1-D arrays (pass argmax label indices, not logits)."
        )
    return {name: METRICS[name](predictions, labels) for name in t.metric_names}


# ------------------------------------------------------------------------------- submissions


def write_submission(
    task: str, indices: Sequence[str], predictions: Sequence | np.ndarray, path: str | os.PathLike
) -> Path:
    """Writes one GLUE test-server file: header ``index<TAB>prediction``, one row per example.

    ``predictions`` are label indices (classification) or floats (STS-B, clipped to [0, 5] and
    written with 3 decimals); they are written as the task's label strings, in the given order.
    The file name the server expects is in ``get_task(task).submission_files``.

    Example::

        write_submission("rte", split.indices, logits.argmax(-1), "run/RTE.tsv")
    """
    t = get_task(task)
    predictions = np.asarray(predictions)
    if predictions.ndim != 1 or len(predictions) != len(indices):
        raise ValueError(
            f"{t.name}: got {predictions.shape} predictions for {len(indices)} indices; pass one "
            "prediction per test example (argmax label indices, not logits)."
        )
    if t.is_regression:
        if not np.all(np.isfinite(predictions)):
            raise ValueError(f"{t.name}: predictions must be finite scores; got nan or inf.")
        column = [f"{p:.3f}" for p in np.clip(predictions.astype(np.float64), 0.0, 5.0)]
    else:
        if not np.issubdtype(predictions.dtype, np.integer) or (
            len(predictions) and not 0 <= predictions.min() <= predictions.max() < t.num_labels
        ):
            raise ValueError(
                f"{t.name}: predictions must be integer label indices in [0, {t.num_labels}); "
                f"got dtype {predictions.dtype}, values {np.unique(predictions)[:5]}."
            )
        column = [t.label_names[p] for p in predictions]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows(zip(indices, column, strict=True))
    return path


def _find_submission_files(sources: Sequence[str | os.PathLike]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {name: [] for name in SUBMISSION_FILES}
    for source in map(Path, sources):
        if source.is_dir():
            for name in SUBMISSION_FILES:
                found[name].extend(sorted(source.rglob(name)))
        elif source.name in found and source.is_file():
            found[source.name].append(source)
        else:
            raise FileNotFoundError(
                f"{source} is neither a directory nor a file named one of {SUBMISSION_FILES}."
            )
    return found


def zip_submission(
    run_dirs_or_files: Sequence[str | os.PathLike],
    output_zip: str | os.PathLike,
    wnli_majority: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Zips the 11 submission files flat into ``output_zip``, ready for gluebenchmark.com.

    Each of ``run_dirs_or_files`` is a submission file or a directory searched recursively. Every
    file name must be found exactly once. With ``wnli_majority`` (what the BERT paper submitted),
    WNLI.tsv is written instead from the most frequent label of ``data_dir``/WNLI/train.tsv for
    every example of ``data_dir``/WNLI/test.tsv (``data_dir`` is required for the test indices).

    Example::

        zip_submission(["runs/cola", "runs/mnli", ...], "glue.zip", True, "glue_data")
    """
    found = _find_submission_files(run_dirs_or_files)
    wnli_file = TASKS["wnli"].submission_files["test"]
    if wnli_majority:
        if data_dir is None:
            raise ValueError(
                "wnli_majority=True needs data_dir: the WNLI test indices come from it."
            )
        if found[wnli_file]:
            logger.info("wnli_majority=True: ignoring %s.", found[wnli_file])
        found[wnli_file] = []
    missing = [name for name, paths in found.items() if not paths and name != wnli_file]
    if not wnli_majority and not found[wnli_file]:
        missing.append(wnli_file)
    if missing:
        raise FileNotFoundError(
            f"Submission files not found in {list(map(str, run_dirs_or_files))}: "
            f"{', '.join(missing)} (use wnli_majority=True for WNLI)."
        )
    duplicated = {name: paths for name, paths in found.items() if len(paths) > 1}
    if duplicated:
        raise ValueError(f"Submission files found more than once, pass one of each: {duplicated}")
    for path in (path for paths in found.values() for path in paths):
        with path.open(encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n")
        if header != "\t".join(SUBMISSION_HEADER):
            raise ValueError(f"{path}: header {header!r}, expected 'index<TAB>prediction'.")

    output_zip = Path(output_zip)
    if output_zip.exists():
        raise FileExistsError(f"{output_zip} exists; choose another name or delete it first.")
    output_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, paths in found.items():
            if paths:
                archive.write(paths[0], arcname=name)
        if wnli_majority:
            archive.writestr(wnli_file, _wnli_majority_submission(data_dir))
    return output_zip


def _wnli_majority_submission(data_dir: str | os.PathLike) -> str:
    labels = read_split(data_dir, "wnli", "train").labels
    majority = TASKS["wnli"].label_names[int(np.bincount(labels).argmax())]
    indices = read_split(data_dir, "wnli", "test").indices
    logger.info("WNLI.tsv: majority class %r for %d test examples.", majority, len(indices))
    rows = [SUBMISSION_HEADER, *((index, majority) for index in indices)]
    return "".join(f"{index}\t{prediction}\n" for index, prediction in rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Gathers the 11 GLUE test-server files of a set of runs into one flat zip.

    python -m bert_jax.tasks.glue --runs=/runs --output=glue.zip --wnli_majority \
        --data_dir=/data/glue
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bert_jax.tasks.glue", description=main.__doc__)
    parser.add_argument("--runs", nargs="+", required=True, help="run dirs (searched) or files")
    parser.add_argument("--output", required=True, help="the zip to write (must not exist)")
    parser.add_argument("--wnli_majority", action="store_true", help="WNLI = train majority class")
    parser.add_argument("--data_dir", help="GLUE folder (needed for --wnli_majority)")
    args = parser.parse_args(argv)
    path = zip_submission(args.runs, args.output, args.wnli_majority, args.data_dir)
    print(f"Wrote {path}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
