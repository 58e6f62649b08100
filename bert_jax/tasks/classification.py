"""The classification family: sentence and sentence-pair classification or regression, on a GLUE
task or on a researcher's own files.

One row per example, ``[CLS] a [SEP] b [SEP]`` with the longer side truncated first; the pooled
[CLS] state feeds a linear classifier (cross-entropy), or one output (squared error, STS-B or
own regression data). What differs between the two sources, the data (:class:`GlueData`,
:class:`bert_jax.tasks.own_data.OwnData`), is behind one small interface: reading the splits,
the metrics, and the prediction files. ``config.task`` picks it: a GLUE task name, or ``"own"``
(``configs/classify.py``).

Usage::

    family = Classification(glue_config.get_config("task=sst2,model=tiny"))
    family.name, family.dev_splits   # ("glue/sst2", ("dev",))
    family = Classification(classify_config.get_config("model=tiny"))
    family.name                      # "own/classification"
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from bert_jax.data.packing import PACKED_FIELDS
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForSequenceClassification
from bert_jax.tasks import Features, PredictionFiles, own_data, write_once
from bert_jax.tasks.glue import (
    GlueSplit,
    compute_metrics,
    get_task,
    load_tfds_split,
    read_split,
    write_submission,
)
from bert_jax.tasks.glue_synthetic import write_synthetic_glue
from bert_jax.tokenizers import Tokenizer


def logits_of(model, params, batch: dict[str, jax.Array], rng: jax.Array | None = None
              ) -> jax.Array:  # fmt: skip
    """The float32 logits of a batch's ``input_ids``, ``token_type_ids`` and ``attention_mask``
    (and of packed rows' ``segment_ids``, ``position_ids`` and ``cls_positions``: one per example
    slot); with dropout where ``rng`` is given (training), deterministic otherwise. Also the
    multiple-choice family's, whose model takes the same three inputs."""
    return model.apply(
        {"params": params},
        batch["input_ids"],
        batch["token_type_ids"],
        batch["attention_mask"],
        **{k: batch[k] for k in PACKED_FIELDS if k in batch},
        deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng},
    ).astype(jnp.float32)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-row softmax cross-entropy against integer labels, and per-row accuracy."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return losses, {"accuracy": (logits.argmax(-1) == labels).astype(jnp.float32)}


class ClassificationData(Protocol):
    """Where a classification family's examples come from and how they are scored and written.

    ``num_labels`` (1: regression) may be known only after ``load`` (labels inferred from the
    training file).
    """

    name: str
    dev_splits: tuple[str, ...]
    test_splits: tuple[str, ...]
    main_metric: str
    predicted_by: str | None
    is_regression: bool
    num_labels: int

    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, GlueSplit]: ...

    def scores(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]: ...

    def dev_files(self, examples: GlueSplit, predictions: np.ndarray) -> PredictionFiles: ...

    def write_test(self, examples: GlueSplit, predictions: np.ndarray, directory: str) -> str: ...


class GlueData:
    """A GLUE task (``config.task``): the GLUE folder, TFDS or the synthetic tasks; GLUE's metrics
    and test-server files."""

    def __init__(self, config: mlc.ConfigDict):
        self.task = get_task(config.task)
        self.name = f"glue/{self.task.name}"
        self.dev_splits = self.task.dev_splits
        self.test_splits = self.task.test_splits
        # AX has no dev split (it is only predicted).
        self.main_metric = f"dev/{(*self.task.dev_splits, 'none')[0]}/{self.task.main_metric}"
        self.predicted_by = self.task.predicted_by
        self.is_regression = self.task.is_regression
        self.num_labels = self.task.num_labels

    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, GlueSplit]:
        """train, the dev splits and (when predicting) the test splits; AX: test only."""
        task = self.task
        wanted = ["train", *task.dev_splits] + (list(task.test_splits) * config.predict_test)
        if task.predicted_by:
            wanted = list(task.test_splits)
        if config.data_source == "tfds":
            return {s: load_tfds_split(task.name, s, data_dir=config.data_dir) for s in wanted}
        if config.data_source == "synthetic":
            write = functools.partial(
                write_synthetic_glue, seed=config.seed, num_train=config.synthetic_train_examples
            )
            data_dir = write_once(os.path.join(workdir, "glue_data"), write, "synthetic GLUE")
        elif config.data_source == "tsv":
            if not config.data_dir:
                raise ValueError(
                    "No GLUE data: set --config.data_dir to the standard GLUE folder, or "
                    "--config.data_source=tfds / synthetic."
                )
            data_dir = config.data_dir
        else:
            raise ValueError(
                f"Unknown config.data_source {config.data_source!r}: use tsv, tfds or synthetic."
            )
        splits = {s: read_split(data_dir, task.name, s) for s in wanted}
        for name, split in splits.items():
            if split.skipped:
                logging.warning(
                    "%s/%s: skipped %d malformed rows", self.name, name, len(split.skipped)
                )
        return splits

    def scores(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """As GLUE scores the task (MNLI: called once per dev split)."""
        return compute_metrics(self.task.name, predictions, labels)

    def dev_files(self, examples: GlueSplit, predictions: np.ndarray) -> PredictionFiles:
        return None  # GLUE's dev predictions are not a deliverable

    def write_test(self, examples: GlueSplit, predictions: np.ndarray, directory: str) -> str:
        """``<directory>/submission/<Task>.tsv`` in the GLUE server's format."""
        path = os.path.join(directory, "submission", self.task.submission_files[examples.split])
        write_submission(self.task.name, examples.indices, predictions, path)
        return path


class Classification:
    """Classification or regression as a fine-tuning family, over :class:`ClassificationData`:
    a GLUE task, or own files when ``config.task == "own"``. Its training batches may be packed
    (``config.pack_examples``): the loss then comes per example slot."""

    packs = True
    bucket_by_length = True

    def __init__(self, config: mlc.ConfigDict):
        make_data: Callable[[mlc.ConfigDict], ClassificationData] = (
            own_data.OwnData if config.task == own_data.TASK else GlueData
        )
        self.data = make_data(config)
        self.name = self.data.name
        self.dev_splits = self.data.dev_splits
        self.test_splits = self.data.test_splits
        self.main_metric = self.data.main_metric
        self.predicted_by = self.data.predicted_by

    # --- Data.
    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, GlueSplit]:
        return self.data.load(config, workdir)

    def featurize(
        self, split: str, examples: GlueSplit, tokenizer: Tokenizer, config: mlc.ConfigDict
    ) -> Features:
        """``[CLS] a [SEP] b [SEP]`` ids (longer side truncated first), padded to max_seq_length."""
        n, length = len(examples), config.max_seq_length
        arrays = {
            "input_ids": np.zeros((n, length), np.int32),
            "token_type_ids": np.zeros((n, length), np.int32),
            "attention_mask": np.zeros((n, length), np.int32),
        }
        for i in range(n):
            a = tokenizer.encode(examples.texts_a[i])
            b = tokenizer.encode(examples.texts_b[i]) if examples.texts_b is not None else None
            ids, types = tokenizer.encode_pair(a, b, length)
            arrays["input_ids"][i, : len(ids)] = ids
            arrays["token_type_ids"][i, : len(ids)] = types
            arrays["attention_mask"][i, : len(ids)] = 1
        if examples.labels is not None:
            arrays["labels"] = np.asarray(examples.labels)
        return Features(arrays)

    # --- Model and objective.
    def model(self, cfg: BertConfig) -> BertForSequenceClassification:
        return BertForSequenceClassification(cfg, self.data.num_labels)

    def loss(self, model, params, batch, rng) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy and accuracy per example (per row, or per slot of packed rows);
        squared error for regression (STS-B)."""
        logits = logits_of(model, params, batch, rng)
        if self.data.is_regression:
            return jnp.square(logits[..., 0] - batch["labels"]), {}
        return cross_entropy(logits, batch["labels"])

    def outputs(self, model, params, batch) -> dict[str, jax.Array]:
        return {"logits": logits_of(model, params, batch)}

    # --- Predictions, metrics and files.
    def predictions(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Label indices (the argmax), or the scores of a regression task."""
        logits = outputs["logits"]
        return logits[:, 0] if self.data.is_regression else logits.argmax(-1)

    def evaluate(
        self, split: str, examples: GlueSplit, features: Features, outputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, float], PredictionFiles]:
        """``dev/<split>/<metric>`` (MNLI: one call per dev split), and the dev prediction files."""
        predictions = self.predictions(outputs)
        scores = self.data.scores(predictions, examples.labels)
        files = self.data.dev_files(examples, predictions)
        return {f"dev/{split}/{k}": v for k, v in scores.items()}, files

    def write_test(
        self,
        split: str,
        examples: GlueSplit,
        features: Features,
        outputs: dict[str, np.ndarray],
        directory: str,
    ) -> list[str]:
        """The test predictions: GLUE's ``submission/<Task>.tsv``; own data's
        ``submission/test_predictions.tsv``."""
        return [self.data.write_test(examples, self.predictions(outputs), directory)]
