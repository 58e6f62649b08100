"""The span family: extractive question answering (SQuAD v1.1 / v2.0), as run_squad.py.

Each question becomes one row per context window (:func:`bert_jax.tasks.squad.featurize`); a
start/end head scores every token; the loss is the mean of the start and end cross-entropies;
evaluation collects every window of the split, then builds the n-best answers per question
(:func:`~bert_jax.tasks.squad.postprocess`) and scores them as the official scripts do. The best
checkpoint's ``predictions.json``, ``nbest_predictions.json`` and (v2) ``null_odds.json`` land in
``WORKDIR/predictions/dev/``.

Usage::

    family = SpanExtraction(squad_config.get_config("version=2.0,model=tiny"))
    family.main_metric   # "dev/f1"
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
from jax.experimental import multihost_utils

from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForQuestionAnswering
from bert_jax.tasks import Features, PredictionFiles, squad
from bert_jax.tokenizers import Tokenizer


class SpanExtraction:
    """SQuAD ``config.version`` as a fine-tuning family."""

    dev_splits = ("dev",)
    test_splits = ()  # SQuAD's test set is hidden; predictions.json of dev is what is scored
    main_metric = "dev/f1"
    predicted_by = None
    token_outputs = ("start_logits", "end_logits")
    # Windows are mostly full, and run_squad.py's n-best search ranks padding positions too (then
    # drops them): cut-off padding would change which 20 candidates it keeps.
    bucket_by_length = False

    def __init__(self, config: mlc.ConfigDict):
        if config.version not in squad.VERSIONS:
            raise ValueError(f"Unknown SQuAD version {config.version!r}; use {squad.VERSIONS}.")
        self.config = config
        self.name = f"squad/v{config.version}"
        self.tokenizer: Tokenizer | None = None  # set by featurize; postprocessing needs it

    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, squad.SquadSplit]:
        version = config.version
        if config.data_source == "tfds":
            return {s: squad.load_tfds(version, s, config.data_dir) for s in ("train", "dev")}
        if config.data_source == "synthetic":
            data_dir = os.path.join(workdir, "squad_data")
            if jax.process_index() == 0 and not os.path.exists(data_dir):
                squad.write_synthetic_squad(
                    data_dir + ".tmp",
                    version,
                    config.seed,
                    config.synthetic_train_examples,
                    config.synthetic_dev_examples,
                    tuple(config.synthetic_sentences),
                )
                os.replace(data_dir + ".tmp", data_dir)
            multihost_utils.sync_global_devices("synthetic SQuAD written")
        elif config.data_source == "json":
            if not config.data_dir:
                raise ValueError(
                    "No SQuAD data: set --config.data_dir to the folder holding the official "
                    f"train-v{version}.json and dev-v{version}.json, or "
                    "--config.data_source=tfds / synthetic."
                )
            data_dir = config.data_dir
        else:
            raise ValueError(
                f"Unknown config.data_source {config.data_source!r}: use json, tfds or synthetic."
            )
        return {s: squad.read_json(data_dir, version, s) for s in ("train", "dev")}

    def featurize(
        self, split: str, examples: squad.SquadSplit, tokenizer: Tokenizer, config: mlc.ConfigDict
    ) -> Features:
        self.tokenizer = tokenizer
        windows = squad.featurize(
            examples,
            tokenizer,
            config.max_seq_length,
            config.doc_stride,
            config.max_query_length,
            training=split == "train",
        )
        arrays = dict(windows.arrays)
        if split != "train":  # no targets outside training
            arrays.pop("start_positions"), arrays.pop("end_positions")
        return Features(arrays, meta=windows)

    def model(self, cfg: BertConfig) -> BertForQuestionAnswering:
        return BertForQuestionAnswering(cfg, bilstm=self.config.bilstm_on_top)

    def loss(self, model, params, batch, rng) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(start cross-entropy + end cross-entropy) / 2 per window, as run_squad.py."""
        start, end = self._logits(model, params, batch, deterministic=False, rng=rng)
        ce = optax.softmax_cross_entropy_with_integer_labels
        losses = (ce(start, batch["start_positions"]) + ce(end, batch["end_positions"])) / 2
        exact = (start.argmax(-1) == batch["start_positions"]) & (
            end.argmax(-1) == batch["end_positions"]
        )
        return losses, {"span_accuracy": exact.astype(jnp.float32)}

    def outputs(self, model, params, batch) -> dict[str, jax.Array]:
        start, end = self._logits(model, params, batch, deterministic=True)
        return {"start_logits": start, "end_logits": end}

    @staticmethod
    def _logits(model, params, batch, deterministic: bool, rng=None):
        start, end = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            deterministic=deterministic,
            rngs=None if rng is None else {"dropout": rng},
        )
        return start.astype(jnp.float32), end.astype(jnp.float32)

    def evaluate(
        self,
        split: str,
        examples: squad.SquadSplit,
        features: Features,
        outputs: dict[str, np.ndarray],
    ) -> tuple[dict[str, float], PredictionFiles]:
        """The official EM / F1 (v2: HasAns / NoAns, best thresholds) as ``dev/<metric>``."""
        c = self.config
        result = squad.postprocess(
            examples,
            features.meta,
            outputs["start_logits"],
            outputs["end_logits"],
            self.tokenizer,
            c.n_best_size,
            c.max_answer_length,
            c.null_score_diff_threshold,
        )
        scores = squad.score(examples, result.predictions, result.null_odds)
        return {f"dev/{k}": float(v) for k, v in scores.items()}, functools.partial(
            squad.write_predictions, result=result
        )

    def write_test(self, split, examples, features, outputs, directory) -> list[str]:
        raise ValueError(f"{self.name} has no test split to predict.")
