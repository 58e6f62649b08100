"""The tagging family: a label per word (CoNLL-2003 NER, or any CoNLL-format files).

Each document becomes windows of sub-tokens (:func:`bert_jax.tasks.conll.featurize`); every word
is labelled on its first sub-token in the one window where it has the most context. Two modes
(``config.mode``):

* ``finetune``: ``BertForTokenClassification``, every parameter trained (the paper's Table 7,
  fine-tuning rows).
* ``feature``: ``BertFeatureTagger``, the paper's feature-based approach: the encoder is frozen
  (``frozen = ("bert",)``: no gradient, no update, no weight decay, no optimizer state) and a
  combination of its layers (``config.feature.layers``) feeds a two-layer BiLSTM and a linear
  classifier.

The loss is the cross-entropy averaged over a batch's labelled words. Evaluation collects every
window of the split, takes each word's prediction from its window, and scores the sentences as
``conlleval`` does: ``dev/f1``, ``dev/precision``, ``dev/recall``, ``dev/accuracy`` and
``dev/<TYPE>/f1`` (precision, recall) in metrics.jsonl; the best checkpoint's
``WORKDIR/predictions/dev/predictions.txt`` (``word gold predicted``, the data's own IOB
scheme) is ready for ``conlleval``, and the test split's, with its scores, goes to
``WORKDIR/predictions/test/``.

Usage::

    family = Tagging(ner_config.get_config("mode=feature,model=tiny"))
    family.frozen, family.main_metric   # (("bert",), "dev/f1")
"""

from __future__ import annotations

import functools
import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertFeatureTagger, BertForTokenClassification
from bert_jax.tasks import Features, PredictionFiles, conll, write_once
from bert_jax.tasks.classification import logits_of
from bert_jax.tokenizers import Tokenizer

MODES = ("finetune", "feature")
DATA_SOURCES = ("conll", "tfds", "synthetic")


def check_documents_marked(split: conll.ConllSplit) -> None:
    """Refuses document context on a file that does not mark its documents: its sentences would
    read as one document, each windowed with unrelated sentences around it."""
    if not split.marked and any(len(d) > 1 for d in split.documents):
        raise ValueError(
            f"{split.source} has no {conll.DOCSTART} lines, so its {len(split)} sentences read as "
            "one document, and document context would window each sentence with unrelated "
            "ones around it (tweets, most user data). Run with --config.context=sentence to tag "
            f"each sentence alone, or mark the documents with '{conll.DOCSTART} -X- -X- O' "
            "lines (one at the top makes the whole file one document)."
        )


class Tagging:
    """Token tagging of ``config.data_source`` in ``config.mode`` as a fine-tuning family."""

    dev_splits = ("dev",)
    test_splits = ("test",)  # read and predicted only with config.predict_test
    main_metric = "dev/f1"
    predicted_by = None
    token_outputs = ("logits",)  # [rows, tokens, labels]

    def __init__(self, config: mlc.ConfigDict):
        if config.mode not in MODES:
            raise ValueError(f"Unknown tagging mode {config.mode!r}; use one of {MODES}.")
        if config.data_source not in DATA_SOURCES:
            raise ValueError(
                f"Unknown config.data_source {config.data_source!r}: use one of {DATA_SOURCES}."
            )
        if config.context not in conll.CONTEXTS:
            raise ValueError(f"Unknown config.context {config.context!r}; use {conll.CONTEXTS}.")
        self.config = config
        self.name = f"tagging/{config.data_source}/{config.mode}"
        self.frozen = ("bert",) if config.mode == "feature" else ()
        # Document windows are all full but each document's last: buckets would add compiled
        # shapes and save little. Sentences alone (and TFDS's, which has no documents) are
        # short: padded to max_seq_length, a tweet computes 10x its tokens.
        self.bucket_by_length = config.context == "sentence" or config.data_source == "tfds"
        self.labels: list[str] | None = None  # set by load(): O, then B-/I- of each type

    # --- Data.
    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, conll.ConllSplit]:
        """train, dev and (with predict_test) test; the label set from train or the config."""
        wanted = ["train", "dev"] + ["test"] * config.predict_test
        scheme = config.tag_scheme
        if config.data_source == "tfds":
            splits = {s: conll.load_tfds(s, config.data_dir, scheme) for s in wanted}
        else:
            if config.data_source == "synthetic":
                data_dir = write_once(
                    os.path.join(workdir, "conll_data"),
                    functools.partial(
                        conll.write_synthetic_conll,
                        seed=config.seed,
                        num_train_documents=config.synthetic_train_documents,
                    ),
                    "synthetic CoNLL",
                )
            elif not config.data_dir:
                raise ValueError(
                    "No CoNLL data: set --config.data_dir to the folder of eng.train, eng.testa "
                    "and eng.testb (or train.txt, valid.txt, test.txt), or use "
                    "--config.data_source=tfds / synthetic."
                )
            else:
                data_dir = config.data_dir
            if "test" in wanted:  # a researcher's data may have no test file
                try:
                    conll.split_path(data_dir, "test")
                except FileNotFoundError as e:
                    raise FileNotFoundError(f"{e} No test set: --config.predict_test=False.") from e
            splits = {s: conll.read_split(data_dir, s, scheme, config.tag_column) for s in wanted}

        if config.context == "document":
            for split in splits.values():
                check_documents_marked(split)
        given = [t.strip() for t in config.entity_types.split(",") if t.strip()]
        types = given or conll.entity_types(splits["train"])
        for split in splits.values():
            conll.check_types(split, types, bool(given))
        self.labels = conll.label_names(types)
        read = {name: f"{len(s)} sentences, {s.scheme}" for name, s in splits.items()}
        logging.info("%s: labels %s; %s", self.name, self.labels, read)
        return splits

    def featurize(
        self, split: str, examples: conll.ConllSplit, tokenizer: Tokenizer, config: mlc.ConfigDict
    ) -> Features:
        # Targets only for training: evaluation reads the gold tags on the host.
        labels = self.labels if split == "train" else None
        feats = conll.featurize(
            examples, tokenizer, labels, config.max_seq_length, config.doc_stride, config.context
        )
        return Features(feats.arrays, meta=feats)

    # --- Model and objective.
    def model(self, cfg: BertConfig) -> BertForTokenClassification | BertFeatureTagger:
        if self.labels is None:
            raise ValueError("Tagging.model needs the label set: call load() first.")
        if self.config.mode == "finetune":
            return BertForTokenClassification(cfg, len(self.labels))
        f = self.config.feature
        return BertFeatureTagger(
            cfg, len(self.labels), f.layers, f.lstm_size, f.lstm_layers, f.dropout
        )

    def loss(self, model, params, batch, rng) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Per-row losses whose mean over the batch's rows is the mean cross-entropy over its
        labelled words (and likewise ``word_accuracy``).

        The loop averages rows; scaling each row's sum by (rows / labelled words) turns that
        into the word-level mean, so a window with many labelled words weighs more, as in
        token-level training. With gradient accumulation it is the mean of the micro-batches'
        word means.
        """
        logits = logits_of(model, params, batch, rng)
        labels = batch["labels"]
        real = batch["weights"] > 0
        labelled = (labels >= 0) & real[:, None]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
        right = labelled & (logits.argmax(-1) == labels)
        scale = jnp.maximum(real.sum(), 1) / jnp.maximum(labelled.sum(), 1)
        row_loss = jnp.where(labelled, losses, 0.0).sum(-1) * scale
        return row_loss, {"word_accuracy": right.sum(-1) * scale}

    def outputs(self, model, params, batch) -> dict[str, jax.Array]:
        return {"logits": logits_of(model, params, batch)}

    # --- Predictions, metrics and files.
    def _scores(
        self, examples: conll.ConllSplit, features: Features, outputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, float], list[list[str]]]:
        """conlleval's scores of the split's predictions, and the predictions (IOB2)."""
        predicted = conll.predictions(examples, features.meta, outputs["logits"], self.labels)
        # Scored in the data's own scheme, as conlleval reads the written file: the entities are
        # the same in either scheme, the token accuracy is not.
        scheme = examples.scheme
        scores = conll.score(
            [conll.to_scheme(g, scheme) for g in conll.gold(examples)],
            [conll.to_scheme(p, scheme) for p in predicted],
        )
        return scores, predicted

    def evaluate(
        self,
        split: str,
        examples: conll.ConllSplit,
        features: Features,
        outputs: dict[str, np.ndarray],
    ) -> tuple[dict[str, float], PredictionFiles]:
        """``dev/f1``, ``dev/precision``, ``dev/recall``, ``dev/accuracy``, ``dev/<TYPE>/...``."""
        scores, predicted = self._scores(examples, features, outputs)
        return {f"dev/{k}": float(v) for k, v in scores.items()}, functools.partial(
            conll.write_predictions, split=examples, predicted=predicted
        )

    def write_test(self, split, examples, features, outputs, directory) -> list[str]:
        """``directory/predictions/test/predictions.txt`` and its conlleval ``scores.json``."""
        from bert_jax.finetune import PREDICTIONS_DIR  # Lazy: the loop imports the families.

        scores, predicted = self._scores(examples, features, outputs)
        target = os.path.join(directory, PREDICTIONS_DIR, split)
        path = conll.write_predictions(target, examples, predicted)
        with open(os.path.join(target, "scores.json"), "w") as f:
            json.dump(scores, f, indent=2)
        logging.info("%s %s: f1 %.2f (%s)", self.name, split, scores["f1"], path)
        return [str(path), os.path.join(target, "scores.json")]
