"""A researcher's own classification or regression data, for the classification family.

Files: a training and a dev file, and optionally a test file, each TSV, CSV or JSON lines,
found in ``config.data_dir`` as ``train``, ``dev`` and ``test`` with the extension ``.tsv``,
``.csv`` or ``.jsonl`` (or given one by one as ``config.train_file`` / ``dev_file`` /
``test_file``). TSV and CSV files have a header naming their columns; TSV is tab-separated with
no quoting (quotes are text, as in GLUE's files); CSV uses standard quoting (as pandas and
spreadsheets write it). A JSON-lines file holds one object per line, its keys the columns.

What is read, all named in the config (``configs/classify.py``): one or two text columns
(``text_columns="premise,hypothesis"``: a sentence pair), the label column, and an optional id
column (default: the row's position among the file's data rows, counting skipped rows). Each
example becomes ``[CLS] text [SEP]`` or ``[CLS] text_a [SEP] text_b [SEP]`` as in GLUE.

* ``task_type="classification"``: labels are strings (JSON numbers become their text); the label
  set is ``config.labels`` (comma-separated, in index order) or every label of the training
  file, sorted (numerically when all are numbers).
* ``task_type="regression"``: labels are numbers; the model has one output (squared error).

Bad input never becomes a silent wrong label:

* a column not in a file's header (or in no JSON object) fails, naming it and the available ones;
* a label outside the label set (a dev label never seen in training, or one missing from
  ``config.labels``) fails, naming the labels, their row count and the first line: the model
  would have no output for it. Add it to ``config.labels`` or remove those rows;
* rows with the wrong number of columns, invalid JSON, a missing key, an empty text or label, or
  (regression) a label that is not a finite number are skipped and counted with their line
  numbers (``GlueSplit.skipped``, one warning per file).

Metrics (``config.metrics``, the first picks the best checkpoint) are GLUE's functions
(:data:`bert_jax.tasks.glue.METRICS`): ``accuracy``, ``f1`` (binary F1 of the second label, as
GLUE's MRPC/QQP: needs exactly two labels), ``matthews_corr``; ``pearson``, ``spearmanr`` for
regression. Predictions are written as ``id<TAB>prediction`` (the label name, or the score):
``WORKDIR/submission/test_predictions.tsv`` for the test file, and for the best checkpoint's dev
evaluation ``WORKDIR/predictions/dev/predictions.tsv`` (with a third column, the true label).

Usage::

    data = OwnData(classify_config.get_config("model=tiny"))
    splits = data.load(config, workdir)   # {"train": GlueSplit, "dev": ..., "test": ...}
    data.label_names                      # ("negative", "positive")
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections as mlc
import numpy as np

from bert_jax.tasks import write_once
from bert_jax.tasks.glue import METRICS, GlueSplit
from bert_jax.tasks.glue_synthetic import _synthetic_example

TASK = "own"  # config.task of own data (any other value is a GLUE task)
SPLITS = ("train", "dev", "test")
FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl"}
TASK_TYPES = ("classification", "regression")
METRICS_OF = {
    "classification": ("accuracy", "f1", "matthews_corr"),
    "regression": ("pearson", "spearmanr"),
}
DEFAULT_METRICS = {"classification": ("accuracy",), "regression": ("pearson", "spearmanr")}
TEST_FILE = os.path.join("submission", "test_predictions.tsv")
DEV_FILE = "predictions.tsv"
PREDICTION_HEADER = ("id", "prediction")
_LAYOUT_HELP = (
    "expected <data_dir>/train.{tsv,csv,jsonl}, dev.{tsv,csv,jsonl} and optionally "
    "test.{tsv,csv,jsonl}, or --config.train_file / dev_file / test_file"
)


def _names(value: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``: the comma-separated lists of the config."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


class OwnData:
    """The files, columns, labels and metrics of ``config`` (see the module docstring).

    Read by the classification family in place of a GLUE task: ``load`` reads the splits (and
    sets ``label_names`` when they are inferred), ``scores`` computes the configured metrics,
    ``dev_files`` and ``write_test`` write the prediction files.
    """

    dev_splits = ("dev",)
    test_splits = ("test",)
    predicted_by = None

    def __init__(self, config: mlc.ConfigDict):
        self.config = config
        self.text_columns = _names(config.text_columns)
        if len(self.text_columns) not in (1, 2):
            raise ValueError(
                f"config.text_columns={config.text_columns!r}: give one text column, or two "
                "comma-separated for sentence pairs (e.g. 'premise,hypothesis')."
            )
        if config.task_type not in TASK_TYPES:
            raise ValueError(
                f"Unknown config.task_type {config.task_type!r}; use one of {TASK_TYPES}."
            )
        self.is_regression = config.task_type == "regression"
        self.metrics = _names(config.metrics) or DEFAULT_METRICS[config.task_type]
        wrong = [m for m in self.metrics if m not in METRICS_OF[config.task_type]]
        if wrong:
            raise ValueError(
                f"config.metrics {list(wrong)} do not apply to {config.task_type}; choose from "
                f"{', '.join(METRICS_OF[config.task_type])}."
            )
        given = _names(config.labels)
        if self.is_regression and given:
            raise ValueError("config.labels names classes; leave it empty for regression.")
        if len(set(given)) != len(given):
            raise ValueError(f"config.labels={config.labels!r} names a label twice.")
        self.label_names: tuple[str, ...] | None = given or None  # inferred by load otherwise
        if given:
            self._check_label_count(given, "config.labels")
        self.name = f"{TASK}/{config.task_type}"
        self.example_dir: str | None = None  # data_source=example: where load wrote the files
        self.main_metric = f"dev/dev/{self.metrics[0]}"

    @property
    def num_labels(self) -> int:
        if self.is_regression:
            return 1
        if self.label_names is None:
            raise ValueError("The label set is inferred from the training file: call load first.")
        return len(self.label_names)

    def _check_label_count(self, labels: Sequence[str], where: str) -> None:
        if len(labels) < 2:
            raise ValueError(
                f"{where} has {len(labels)} label(s) {list(labels)}: classification needs two or "
                "more (use task_type=regression for numeric targets)."
            )
        if "f1" in self.metrics and len(labels) != 2:
            raise ValueError(
                f"Metric f1 is the binary F1 of the second label, but {where} has {len(labels)} "
                f"labels {list(labels)}; use accuracy or matthews_corr."
            )

    # --- Reading.
    def files(self) -> dict[str, Path]:
        """The file of each split: explicit paths, else found in data_dir; test is optional."""
        c = self.config
        data_dir = self.example_dir or c.data_dir
        explicit = {"train": c.train_file, "dev": c.dev_file, "test": c.test_file}
        if not data_dir and not (explicit["train"] and explicit["dev"]):
            raise ValueError(
                "No data: set --config.data_dir to a folder holding train and dev files, or "
                f"--config.train_file and --config.dev_file ({_LAYOUT_HELP})."
            )
        files = {}
        for split in SPLITS:
            if explicit[split]:
                files[split] = Path(explicit[split])
                if not files[split].is_file():
                    raise FileNotFoundError(f"config.{split}_file={files[split]} not found.")
                continue
            found = [Path(data_dir, split + ext) for ext in FORMATS] if data_dir else []
            found = [path for path in found if path.is_file()]
            if len(found) > 1:
                raise ValueError(
                    f"{data_dir} holds {[p.name for p in found]}: keep one {split} file, or "
                    f"pick one with --config.{split}_file."
                )
            if found:
                files[split] = found[0]
            elif split != "test":
                raise FileNotFoundError(f"No {split} file in {data_dir}: {_LAYOUT_HELP}.")
        return files

    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, GlueSplit]:
        """Every split with label indices (classification) or float scores (regression)."""
        if config.data_source == "example":
            write = functools.partial(
                write_example_files, task_type=config.task_type, seed=config.seed
            )
            self.example_dir = write_once(os.path.join(workdir, "own_data"), write, "example files")
        elif config.data_source != "files":
            raise ValueError(
                f"Unknown config.data_source {config.data_source!r}: use files (data_dir or "
                "*_file) or example (a generated set, written into the workdir)."
            )
        files = self.files()
        if not config.predict_test:
            files.pop("test", None)
        columns = dict(
            text_columns=self.text_columns,
            label_column=config.label_column,
            id_column=config.id_column or None,
            file_format=config.file_format or None,
            regression=self.is_regression,
        )
        raw = {
            split: read_file(path, split, labelled=split != "test", **columns)
            for split, path in files.items()
        }
        if not self.is_regression:
            if self.label_names is None:
                self.label_names = infer_label_names(raw["train"].labels)
                self._check_label_count(self.label_names, f"{files['train']}")
            raw = {
                split: index_labels(examples, self.label_names, files[split])
                for split, examples in raw.items()
            }
        return raw

    # --- Metrics and prediction files.
    def scores(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """The configured metrics of predicted label indices (or scores) against the labels."""
        return {name: METRICS[name](predictions, labels) for name in self.metrics}

    def prediction_texts(self, predictions: np.ndarray) -> list[str]:
        """Label names of predicted indices, or scores written with 6 significant digits."""
        if self.is_regression:
            return [f"{p:.6g}" for p in predictions]
        return [self.label_names[p] for p in predictions]

    def dev_files(self, examples: GlueSplit, predictions: np.ndarray) -> Callable[[str], None]:
        """A writer of ``<directory>/predictions.tsv``: id, prediction, true label."""
        return functools.partial(
            _write_into,
            ids=examples.indices,
            predictions=self.prediction_texts(predictions),
            labels=self.prediction_texts(examples.labels),
        )

    def write_test(self, examples: GlueSplit, predictions: np.ndarray, directory: str) -> str:
        path = os.path.join(directory, TEST_FILE)
        write_predictions(path, examples.indices, self.prediction_texts(predictions))
        return path


# ------------------------------------------------------------------------------------------------
# Files.


def detect_format(path: str | os.PathLike, override: str | None = None) -> str:
    """``tsv``, ``csv`` or ``jsonl``: ``override`` if given, else from the extension."""
    if override:
        if override not in FORMATS.values():
            raise ValueError(
                f"Unknown file format {override!r}; use one of {', '.join(FORMATS.values())}."
            )
        return override
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{path}: cannot tell the format from {suffix!r}; name the file *.tsv, *.csv or "
            "*.jsonl, or set --config.file_format=tsv|csv|jsonl."
        )
    return FORMATS[suffix]


def _records(path: Path, fmt: str) -> tuple[list[str], list[tuple[int, dict | str]]]:
    """The file's columns and its rows as (line number, {column: value} or why it is malformed).

    Blank lines are not rows. A JSON-lines file's columns are every key of its objects.
    """
    rows: list[tuple[int, dict | str]] = []
    # "utf-8-sig" drops a byte-order mark (spreadsheets write one).
    if fmt == "jsonl":
        keys: dict[str, None] = {}  # every key, in the order first seen
        with path.open(encoding="utf-8-sig") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    rows.append((line_number, f"invalid JSON ({e.msg})"))
                    continue
                if not isinstance(row, dict):
                    rows.append((line_number, f"a JSON {type(row).__name__}, not an object"))
                    continue
                keys.update(dict.fromkeys(row))
                rows.append((line_number, row))
        return list(keys), rows
    # TSV as GLUE writes it: quotes are text. CSV: standard quoting (fields may hold newlines).
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, **dialect)
        columns = next(reader, [])
        for row in filter(None, reader):
            if len(row) != len(columns):
                rows.append((reader.line_num, f"{len(row)} columns, expected {len(columns)}"))
            else:
                rows.append((reader.line_num, dict(zip(columns, row, strict=True))))
    return columns, rows


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def read_file(
    path: str | os.PathLike,
    split: str,
    *,
    text_columns: Sequence[str],
    label_column: str,
    id_column: str | None = None,
    labelled: bool = True,
    regression: bool = False,
    file_format: str | None = None,
) -> GlueSplit:
    """Reads one file into a :class:`GlueSplit` whose ``labels`` are the raw label strings
    (classification: turn them into indices with :func:`index_labels`) or float32 scores.

    ``labelled=False`` (a test file): the label column is not needed and not read. Malformed rows
    are skipped and counted (module docstring); unknown columns fail.

    Example::

        raw = read_file("data/train.csv", "train", text_columns=["review"], label_column="stars")
        index_labels(raw, infer_label_names(raw.labels), "data/train.csv").labels
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {_LAYOUT_HELP}.")
    fmt = detect_format(path, file_format)
    columns, rows = _records(path, fmt)
    required = [*text_columns, *[label_column] * labelled, *[id_column] * bool(id_column)]
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(
            f"{path}: no column {', '.join(map(repr, missing))}; the available columns are "
            f"{columns}. Set --config.text_columns / label_column / id_column to those names."
        )
    texts: list[list[str]] = [[] for _ in text_columns]
    labels: list[str | float] = []
    ids: list[str] = []
    skipped: list[tuple[int, str]] = []
    for position, (line, row) in enumerate(rows):
        if isinstance(row, str):
            skipped.append((line, row))
            continue
        absent = [c for c in required if c not in row]
        if absent:
            skipped.append((line, f"no {', '.join(absent)}"))
            continue
        values = [_text(row[c]) for c in text_columns]
        empty = [c for c, v in zip(text_columns, values, strict=True) if not v.strip()]
        if empty:
            skipped.append((line, f"empty text in {', '.join(empty)}"))
            continue
        if labelled:
            label = _label(row[label_column], regression)
            if isinstance(label, tuple):
                skipped.append((line, label[0]))
                continue
            labels.append(label)
        for column, value in zip(texts, values, strict=True):
            column.append(value)
        ids.append(_text(row[id_column]) if id_column else str(position))
    if skipped:
        line, why = skipped[0]
        logging.warning(
            "%s: skipped %d malformed rows (first: line %d, %s); see GlueSplit.skipped.",
            path, len(skipped), line, why,
        )  # fmt: skip
    if labelled and regression:
        label_array = np.asarray(labels, np.float32)
    else:
        label_array = np.asarray(labels, dtype=object) if labelled else None
    return GlueSplit(
        task=TASK,
        split=split,
        texts_a=texts[0],
        texts_b=texts[1] if len(texts) == 2 else None,
        labels=label_array,
        indices=ids,
        skipped=skipped,
    )


def _label(value: Any, regression: bool) -> str | float | tuple[str]:
    """The label, or (why it is malformed,)."""
    text = _text(value).strip()
    if not text:
        return ("empty label",)
    if not regression:
        return text
    try:
        score = float(text)
    except ValueError:
        return (f"label {text!r} is not a number",)
    return score if math.isfinite(score) else (f"label {text!r} is not finite",)


def infer_label_names(labels: Sequence[str]) -> tuple[str, ...]:
    """The distinct labels, sorted: numerically when every label is a number, else as text.

    >>> infer_label_names(["10", "2", "2", "1"])
    ('1', '2', '10')
    """
    distinct = set(labels)
    try:
        return tuple(sorted(distinct, key=float))
    except ValueError:
        return tuple(sorted(distinct))


def index_labels(
    examples: GlueSplit, label_names: Sequence[str], path: str | os.PathLike
) -> GlueSplit:
    """``examples`` with label strings replaced by int32 indices into ``label_names``.

    A label outside ``label_names`` fails, naming every such label, its row count and a line.
    """
    if examples.labels is None:
        return examples
    index = {name: i for i, name in enumerate(label_names)}
    unknown = collections.Counter(label for label in examples.labels if label not in index)
    if unknown:
        found = ", ".join(f"{label!r} ({n} rows)" for label, n in unknown.most_common())
        raise ValueError(
            f"{path}: labels {found} are not in the label set {list(label_names)} (the training "
            "file's labels, or config.labels): the model has no output for them. Add them to "
            "--config.labels (comma-separated, in index order) or remove those rows."
        )
    labels = np.asarray([index[label] for label in examples.labels], np.int32)
    return dataclasses.replace(examples, labels=labels)


def write_predictions(
    path: str | os.PathLike,
    ids: Sequence[str],
    predictions: Sequence[str],
    labels: Sequence[str] | None = None,
) -> Path:
    """Writes ``id<TAB>prediction`` (and ``<TAB>label`` when given), one row per example.

    Tab-separated with minimal quoting, so an id or label holding a tab or quote still reads
    back with ``csv.reader(f, delimiter="\\t")``.
    """
    if len(predictions) != len(ids) or (labels is not None and len(labels) != len(ids)):
        raise ValueError(f"Got {len(predictions)} predictions for {len(ids)} ids.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(PREDICTION_HEADER + ("label",) * (labels is not None))
        columns = (ids, predictions) if labels is None else (ids, predictions, labels)
        writer.writerows(zip(*columns, strict=True))
    return path


def _write_into(
    directory: str, ids: Sequence[str], predictions: Sequence[str], labels: Sequence[str]
) -> None:
    write_predictions(os.path.join(directory, DEV_FILE), ids, predictions, labels)


# ------------------------------------------------------------------------------------------------
# A generated example set, to try the path end to end without data of one's own.


def write_example_files(
    directory: str | os.PathLike,
    task_type: str = "classification",
    seed: int = 0,
    num_train: int = 1024,
    num_dev: int = 256,
    num_test: int = 128,
) -> Path:
    """Writes train/dev/test files of a small learnable task in the layouts this module reads.

    ``classification``: ``train.csv`` etc. with columns ``id,review,sentiment``: a clause of the
    synthetic GLUE grammar ending in a sentiment word, labelled ``negative`` or ``positive``.
    ``regression``: ``train.jsonl`` etc. with keys ``id``, ``review1``, ``review2``, ``rating``:
    two short reviews ("the quiet dog was good"), rated 0 (both negative), 2.5 or 5 (both
    positive): a pair task whose cue is a word on each side, within 64 tokens. (Synthetic STS-B,
    whose score needs words matched across the pair, reached Pearson 0.2 only with the tiny
    model.) Test files have no label. Deterministic in ``seed``.

    Example::

        write_example_files("/tmp/own", "regression")   # /tmp/own/{train,dev,test}.jsonl
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"Unknown task_type {task_type!r}; use one of {TASK_TYPES}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, TASK_TYPES.index(task_type)])
    for split, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
        rows = []
        for i in range(count):
            if task_type == "classification":
                text, _, label = _synthetic_example("sst2", rng)
                row = {"id": f"{split}-{i}", "review": text,
                       "sentiment": ("negative", "positive")[int(label)]}  # fmt: skip
            else:  # the mean sentiment of two short reviews, 0 (both negative) to 5
                (a, first), (b, second) = _short_review(rng), _short_review(rng)
                row = {"id": f"{split}-{i}", "review1": a, "review2": b,
                       "rating": 2.5 * (first + second)}  # fmt: skip
            if split == "test":
                row.pop("sentiment", None), row.pop("rating", None)
            rows.append(row)
        if task_type == "classification":
            with (directory / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        else:
            lines = "".join(json.dumps(row) + "\n" for row in rows)
            (directory / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    return directory


def _short_review(rng: np.random.Generator) -> tuple[str, int]:
    """("the ADJ NOUN was SENTIMENT", 1 if positive else 0), from synthetic SST-2."""
    text, _, label = _synthetic_example("sst2", rng)
    words = text.split()
    return " ".join([*words[:3], "was", words[-1]]), int(label)
