"""The multiple-choice family: pick one of four endings (SWAG), as the BERT paper's section 4.4.

Each example is four rows ``[CLS] sent1 [SEP] sent2 + " " + ending_i [SEP]``, featurized as
``[examples, 4, length]`` arrays (:func:`bert_jax.tasks.swag.featurize`); the encoder scores each
row from its pooled output (``BertForMultipleChoice``) and a softmax over the four gives the
choice; the loss is the cross-entropy of that softmax. Dev metric: accuracy. The best
checkpoint's dev predictions are in ``WORKDIR/predictions/dev/predictions.csv`` and the test
predictions in ``WORKDIR/submission/swag_test.csv`` (``id,prediction,prob0..prob3``).

Usage::

    family = MultipleChoice(swag_config.get_config("model=tiny"))
    family.name, family.main_metric   # ("swag", "dev/accuracy")
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForMultipleChoice
from bert_jax.tasks import Features, PredictionFiles, swag, write_once
from bert_jax.tasks.classification import cross_entropy, logits_of
from bert_jax.tasks.glue import accuracy
from bert_jax.tokenizers import Tokenizer

TEST_FILE = os.path.join("submission", "swag_test.csv")
DEV_FILE = "predictions.csv"


class ChoiceRows(BertForMultipleChoice):
    """``BertForMultipleChoice`` that also takes ``[batch, length]`` ids as one choice each.

    The fine-tuning loop initialises every family's model from ``[1, max_seq_length]`` ids; the
    parameters do not depend on the number of choices, so that shape builds the same tree.
    """

    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        if input_ids.ndim == 2:
            inputs = (input_ids, token_type_ids, attention_mask)
            input_ids, token_type_ids, attention_mask = (
                None if x is None else x[:, None] for x in inputs
            )
        return super().__call__(
            input_ids, token_type_ids, attention_mask, deterministic=deterministic
        )


class MultipleChoice:
    """SWAG as a fine-tuning family (``config.data_source``: csv or synthetic)."""

    name = "swag"
    dev_splits = ("dev",)
    main_metric = "dev/accuracy"
    predicted_by = None
    bucket_by_length = True

    def __init__(self, config: mlc.ConfigDict):
        self.test_splits = ("test",) if config.predict_test else ()

    # --- Data.
    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, swag.SwagSplit]:
        """train, dev and (when predicting) test, from the official CSVs or the synthetic set."""
        if config.data_source == "synthetic":
            write = functools.partial(
                swag.write_synthetic_swag,
                seed=config.seed,
                num_train=config.synthetic_train_examples,
            )
            data_dir = write_once(os.path.join(workdir, "swag_data"), write, "synthetic SWAG")
        elif config.data_source == "csv":
            if not config.data_dir:
                raise ValueError(
                    "No SWAG data: set --config.data_dir to the folder holding the official "
                    "train.csv, val.csv and test.csv (github.com/rowanz/swagaf, data/), or "
                    "--config.data_source=synthetic."
                )
            data_dir = config.data_dir
        elif config.data_source == "tfds":
            raise ValueError(
                "TensorFlow Datasets (4.9.10) has no SWAG builder (its hellaswag is another "
                "dataset): download the official CSVs and use --config.data_source=csv."
            )
        else:
            raise ValueError(
                f"Unknown config.data_source {config.data_source!r}: use csv or synthetic."
            )
        splits = ("train", *self.dev_splits, *self.test_splits)
        return {split: swag.read_csv(data_dir, split) for split in splits}

    def featurize(
        self, split: str, examples: swag.SwagSplit, tokenizer: Tokenizer, config: mlc.ConfigDict
    ) -> Features:
        return Features(swag.featurize(examples, tokenizer, config.max_seq_length))

    # --- Model and objective.
    def model(self, cfg: BertConfig) -> ChoiceRows:
        return ChoiceRows(cfg)

    def loss(self, model, params, batch, rng) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy of the softmax over each example's choices, and its accuracy."""
        return cross_entropy(logits_of(model, params, batch, rng), batch["labels"])

    def outputs(self, model, params, batch) -> dict[str, jax.Array]:
        return {"logits": logits_of(model, params, batch)}

    # --- Metrics and prediction files.
    def evaluate(
        self,
        split: str,
        examples: swag.SwagSplit,
        features: Features,
        outputs: dict[str, np.ndarray],
    ) -> tuple[dict[str, float], PredictionFiles]:
        """``dev/accuracy``, and the split's ``predictions.csv`` writer."""
        probabilities = _softmax(outputs["logits"])
        scores = {"dev/accuracy": accuracy(probabilities.argmax(-1), examples.labels)}
        write = functools.partial(_write_into, ids=examples.ids, probabilities=probabilities)
        return scores, write

    def write_test(
        self,
        split: str,
        examples: swag.SwagSplit,
        features: Features,
        outputs: dict[str, np.ndarray],
        directory: str,
    ) -> list[str]:
        """``<directory>/submission/swag_test.csv``: ids, predicted endings, probabilities."""
        path = os.path.join(directory, TEST_FILE)
        swag.write_predictions(path, examples.ids, _softmax(outputs["logits"]))
        return [path]


def _softmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))


def _write_into(directory: str, ids: list[str], probabilities: np.ndarray) -> None:
    swag.write_predictions(os.path.join(directory, DEV_FILE), ids, probabilities)
