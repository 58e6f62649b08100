"""Fine-tuning task families: everything that differs between GLUE, SQuAD, SWAG and NER.

``bert_jax.finetune`` runs one loop (sharded step, epochs, dev evaluation, best checkpoint, test
predictions, resume, multi-host) over any :class:`Family`; a family is the small bundle of parts
that loop calls, with the same names in every family:

==================  ===========================================================================
``load``            the splits' examples: official files, TFDS, or the embedded synthetic set
``featurize``       examples -> :class:`Features`: fixed-shape arrays, one row per model input
``model``           the encoder with the family's head
``loss``            per-row losses (and per-row metrics) of a training batch
``outputs``         what evaluation keeps of the model's outputs for a batch (float32 arrays)
``evaluate``        a dev split's outputs -> ``{metric: value}`` and the prediction files
``write_test``      a test split's outputs -> the files its benchmark server reads
==================  ===========================================================================

Families: ``classification`` (GLUE and a researcher's own files;
:mod:`bert_jax.tasks.classification`), ``span`` (SQuAD v1.1 / v2.0; :mod:`bert_jax.tasks.span`)
and ``multiple_choice`` (SWAG; :mod:`bert_jax.tasks.multiple_choice`). A family's dataset code
lives beside it (``glue.py``, ``own_data.py``, ``squad.py``, ``swag.py``).

Token tagging (CoNLL-2003 NER, any CoNLL-format files) is ``tagging``
(:mod:`bert_jax.tasks.tagging`, its data side in ``conll.py``).

Usage::

    family = get_family(config)              # config.family selects it
    splits = family.load(config, workdir)    # {"train": ..., "dev": ...}
    features = family.featurize("dev", splits["dev"], tokenizer, config)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections as mlc
import numpy as np
from jax.experimental import multihost_utils

from bert_jax.models.bert import BertConfig
from bert_jax.tokenizers import Tokenizer


@dataclasses.dataclass
class Features:
    """A split ready for the model.

    Attributes:
      arrays: equal-length arrays, one row per model input (a GLUE example, a SQuAD window):
        the model's inputs and, where known, its targets. The loop batches them.
      meta: whatever the family needs to turn rows back into predictions (SQuAD: each window's
        example and token-to-word map); never sent to the devices.
    """

    arrays: dict[str, np.ndarray]
    meta: Any = None

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))


# evaluate() returns a writer of the split's prediction files into a directory (None: no files).
PredictionFiles = Callable[[str], object] | None


def write_once(directory: str, write: Callable[[str], object], what: str) -> str:
    """``directory``, written by ``write(path)`` on process 0 unless it exists, then seen by all.

    For the embedded data sets a family writes into its workdir: written aside and renamed, so
    an interrupted run never leaves a half-written folder that a re-run would trust.

    >>> write_once(f"{workdir}/swag_data", write_synthetic_swag, "synthetic SWAG")  # doctest: +SKIP
    """
    if jax.process_index() == 0 and not os.path.exists(directory):
        write(directory + ".tmp")
        os.replace(directory + ".tmp", directory)
    multihost_utils.sync_global_devices(f"{what} written")
    return directory


class Family(Protocol):
    """What the fine-tuning loop needs from a task family (see the module docstring)."""

    name: str  # for logs and errors, e.g. "glue/mrpc", "squad/v2.0"
    dev_splits: tuple[str, ...]  # evaluated every epoch; the first one picks the best checkpoint
    test_splits: tuple[str, ...]  # predicted with the best checkpoint (``write_test``)
    main_metric: str  # the metric of ``evaluate`` that picks the best checkpoint
    predicted_by: str | None  # set where the split is only predicted, by a fine-tuned model
    # Optional (default ()): the outputs that run along the tokens (on axis 1). Evaluation cuts
    # batches to their length bucket, and pads these back to max_seq_length with -inf.
    token_outputs: tuple[str, ...]
    # Optional (default False): whether its training batches may be packed, several examples
    # per row (``config.pack_examples``; ``bert_jax.data.packing``): then ``loss`` takes rows
    # with ``segment_ids``, ``position_ids`` and ``cls_positions`` and returns per-slot losses.
    packs: bool
    # Optional (the loop reads it with a default of ()): top-level parameter groups the optimizer
    # leaves untouched, with no update, no weight decay and no optimizer state (``optim.freeze``),
    # e.g. ("bert",) for the feature-based tagger's fixed encoder.
    frozen: tuple[str, ...]
    # What ``config.bucket_by_length=None`` resolves to: whether length buckets pay off for the
    # family's rows as its options make them.
    bucket_by_length: bool

    def load(self, config: mlc.ConfigDict, workdir: str) -> dict[str, Any]: ...

    def featurize(
        self, split: str, examples: Any, tokenizer: Tokenizer, config: mlc.ConfigDict
    ) -> Features: ...

    def model(self, cfg: BertConfig) -> nn.Module: ...

    def loss(
        self, model: nn.Module, params: Any, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    def outputs(
        self, model: nn.Module, params: Any, batch: dict[str, jax.Array]
    ) -> dict[str, jax.Array]: ...

    def evaluate(
        self, split: str, examples: Any, features: Features, outputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, float], PredictionFiles]: ...

    def write_test(
        self,
        split: str,
        examples: Any,
        features: Features,
        outputs: dict[str, np.ndarray],
        directory: str,
    ) -> list[str]: ...


FAMILIES = ("classification", "span", "multiple_choice", "tagging")


def get_family(config: mlc.ConfigDict) -> Family:
    """The family ``config.family`` names, built from the config (its task, version, ...).

    >>> get_family(glue_config.get_config("task=rte")).name  # doctest: +SKIP
    'glue/rte'
    """
    if config.family == "classification":
        from bert_jax.tasks.classification import Classification

        return Classification(config)
    if config.family == "span":
        from bert_jax.tasks.span import SpanExtraction

        return SpanExtraction(config)
    if config.family == "multiple_choice":
        from bert_jax.tasks.multiple_choice import MultipleChoice

        return MultipleChoice(config)
    if config.family == "tagging":
        from bert_jax.tasks.tagging import Tagging

        return Tagging(config)
    raise ValueError(f"Unknown config.family {config.family!r}; valid families: {FAMILIES}.")
