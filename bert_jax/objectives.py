"""The pretraining objectives, as sums over a batch: masked LM + next-sentence prediction, or the
left-to-right language model of the paper's "LTR & No NSP" ablation (Table 5).

Kept apart from ``bert_jax.pretrain`` (which needs grain, orbax and ml_collections) so that
benchmarks and tests can build the exact training step without the input pipeline.

Usage::

    step = make_train_step(
        make_loss_fn(BertForPreTraining(cfg), use_nsp=True), loss_denominators, tx, shardings,
        mesh, rules,
    )
    # Left-to-right: a causal model (BertConfig(causal=True)) predicting every next token.
    step = make_train_step(make_ltr_loss_fn(BertForPreTraining(cfg)), ltr_denominators, ...)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from bert_jax.data.packing import PACKED_FIELDS
from bert_jax.models.heads import BertForPreTraining
from bert_jax.train import Batch, LossFn


def nsp_weights(batch: Batch) -> jax.Array:
    """1 for every real sentence pair: [batch] for plain rows (a padding row has no tokens),
    [batch, max_pairs] for packed rows (empty pair slots weigh 0)."""
    if "nsp_weights" in batch:
        return batch["nsp_weights"]
    return (batch["attention_mask"][:, 0] > 0).astype(jnp.float32)


def loss_denominators(batch: Batch) -> dict[str, jax.Array]:
    """Normalisers over the whole (global) batch: masked tokens, and real sentence pairs."""
    return {
        "mlm": jnp.maximum(batch["masked_weights"].sum(), 1.0),
        "nsp": jnp.maximum(nsp_weights(batch).sum(), 1.0),
    }


def _apply(model: BertForPreTraining, params, batch: Batch, rng, deterministic: bool, **kwargs):
    """The model on a batch. Packed rows (``segment_ids``, ``position_ids``, ``cls_positions``) go
    through the same call: attention stays inside each pair, positions restart, and NSP reads each
    pair's [CLS]."""
    return model.apply(
        {"params": params},
        input_ids=batch["input_ids"],
        token_type_ids=batch["token_type_ids"],
        attention_mask=batch["attention_mask"],
        **{k: batch[k] for k in PACKED_FIELDS if k in batch},
        **kwargs,
        deterministic=deterministic,
        rngs=None if deterministic else {"dropout": rng},
    )


def pretraining_terms(model: BertForPreTraining, params, batch: Batch, rng, deterministic: bool):
    """Per-batch sums of the MLM and NSP losses and correct predictions."""
    out = _apply(
        model, params, batch, rng, deterministic, masked_positions=batch["masked_positions"]
    )
    mlm_logits = out.mlm_logits.astype(jnp.float32)
    w = batch["masked_weights"]
    mlm_ce = optax.softmax_cross_entropy_with_integer_labels(mlm_logits, batch["masked_ids"])
    nsp_logits = out.nsp_logits.astype(jnp.float32)
    nsp_w = nsp_weights(batch)
    labels = batch["next_sentence_label"]
    nsp_ce = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, labels)
    # jnp.where, not a product: a padding row's logits must not reach the sums even as NaN.
    return {
        "mlm_loss": jnp.where(w > 0, mlm_ce * w, 0.0).sum(),
        "mlm_accuracy": ((mlm_logits.argmax(-1) == batch["masked_ids"]) * w).sum(),
        "nsp_loss": jnp.where(nsp_w > 0, nsp_ce * nsp_w, 0.0).sum(),
        "nsp_accuracy": ((nsp_logits.argmax(-1) == labels) * nsp_w).sum(),
    }


def make_loss_fn(model: BertForPreTraining, use_nsp: bool) -> LossFn:
    """The training loss for ``bert_jax.train.make_train_step``: MLM (+ NSP when ``use_nsp``).

    Each term is a batch sum divided by a whole-batch denominator (:func:`loss_denominators`), so
    micro-batch losses add up to the full-batch loss.
    """

    def loss_fn(params, batch, rng, denominators):
        sums = pretraining_terms(model, params, batch, rng, deterministic=False)
        metrics = {
            k: v / denominators["mlm" if k.startswith("mlm") else "nsp"] for k, v in sums.items()
        }
        loss = metrics["mlm_loss"] + (metrics["nsp_loss"] if use_nsp else 0.0)
        return loss, metrics

    return loss_fn


# ----------------------------------------------------------------------------------------------
# Left-to-right language modelling ("LTR & No NSP"): the same rows, unmasked, and a causal model.
# ----------------------------------------------------------------------------------------------
def next_token_targets(batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(labels, weights), each [batch, length]: position t predicts token t + 1 when that token is
    in t's own sequence (its packed pair), else it weighs 0 (the last token, padding, and the
    boundary between two packed pairs)."""
    segments = batch["segment_ids"] if "segment_ids" in batch else batch["attention_mask"]
    ids = batch["input_ids"]
    labels = jnp.concatenate([ids[:, 1:], jnp.zeros_like(ids[:, :1])], axis=1)
    following = jnp.concatenate([segments[:, 1:], jnp.zeros_like(segments[:, :1])], axis=1)
    return labels, ((segments != 0) & (following == segments)).astype(jnp.float32)


def ltr_denominators(batch: Batch) -> dict[str, jax.Array]:
    """The normaliser over the whole (global) batch: predicted next tokens."""
    return {"lm": jnp.maximum(next_token_targets(batch)[1].sum(), 1.0)}


def ltr_terms(model: BertForPreTraining, params, batch: Batch, rng, deterministic: bool):
    """Per-batch sums of the next-token loss and correct predictions: every position of a causal
    model (``model.cfg.causal``) predicts the next token through the MLM head (the tied decoder,
    Hugging Face's ``BertLMHeadModel``'s ``cls.predictions``)."""
    logits = _apply(model, params, batch, rng, deterministic).mlm_logits.astype(jnp.float32)
    labels, w = next_token_targets(batch)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return {
        "lm_loss": jnp.where(w > 0, ce * w, 0.0).sum(),
        "lm_accuracy": ((logits.argmax(-1) == labels) * w).sum(),
    }


def make_ltr_loss_fn(model: BertForPreTraining) -> LossFn:
    """The left-to-right training loss: the mean next-token cross-entropy over the whole batch
    (:func:`ltr_denominators`), as ``make_loss_fn`` for ``make_train_step``."""
    if not model.cfg.causal:
        raise ValueError(
            "A left-to-right LM needs a causal model (BertConfig(causal=True)): a bidirectional "
            "one sees the token it predicts."
        )

    def loss_fn(params, batch, rng, denominators):
        sums = ltr_terms(model, params, batch, rng, deterministic=False)
        metrics = {k: v / denominators["lm"] for k, v in sums.items()}
        return metrics["lm_loss"], metrics

    return loss_fn
