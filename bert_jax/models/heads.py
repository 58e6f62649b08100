"""Task heads on top of the encoder: MLM + NSP for pretraining; for fine-tuning, sequence
classification (GLUE), span extraction (SQuAD), multiple choice (SWAG) and token tagging (NER).

Usage::

    model = BertForPreTraining(BertConfig.from_name("base"))
    out = model.apply({"params": params}, input_ids=ids, token_type_ids=types,
                      attention_mask=mask, masked_positions=positions, deterministic=True)
    out.mlm_logits  # [batch, num_predictions, vocab] (or [batch, length, vocab] without positions)
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert_jax.models.bert import ACTIVATIONS, BertConfig, BertModel, constrain, dense, layer_norm


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class PreTrainingOutput:
    # [batch, length, hidden]; [batch, predictions, hidden] at masked_positions (sparse head)
    sequence_output: jax.Array
    pooled_output: jax.Array  # [batch, hidden] (or [batch, pairs, hidden] when packed)
    # [batch, predictions, vocab] at masked_positions, else [batch, length, vocab]
    mlm_logits: jax.Array
    nsp_logits: jax.Array  # [batch, 2] (or [batch, pairs, 2] when packed); 0 = IsNext, 1 = random


class MaskedLMHead(nn.Module):
    """Dense + activation + LayerNorm, then the decoder tied to the word embeddings plus a bias.

    Projects every hidden state it is given, then keeps the logits at ``masked_positions`` if
    any. With ``cfg.sparse_mlm_head``, `BertForPreTraining` gives it the hidden states at the
    masked positions only, so the largest matmul of the model runs on ~15% of the tokens.
    """

    cfg: BertConfig

    @nn.compact
    def __call__(self, x, decode, masked_positions=None):
        cfg = self.cfg
        x = dense(cfg, cfg.hidden_size, ("embed", "mlp"), name="dense")(x)
        x = layer_norm(cfg, "layer_norm")(ACTIVATIONS[cfg.hidden_act](x))
        logits = decode(x)
        bias = self.param(
            "output_bias",
            nn.with_logical_partitioning(nn.initializers.zeros_init(), ("vocab",)),
            (cfg.vocab_size,),
            cfg.weight_dtype,
        )
        logits = logits + bias.astype(logits.dtype)
        if masked_positions is not None:
            logits = jnp.take_along_axis(logits, masked_positions[..., None], axis=1)
        return constrain(logits, "activation_batch", "activation_length", "activation_vocab")


class BertForPreTraining(nn.Module):
    """The encoder with the masked-LM and next-sentence-prediction heads."""

    cfg: BertConfig

    def setup(self):
        self.bert = BertModel(self.cfg)
        self.mlm_head = MaskedLMHead(self.cfg)
        self.nsp_head = dense(self.cfg, 2, ("embed", None), name="nsp_head")

    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        masked_positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        cls_positions: jax.Array | None = None,
        deterministic: bool = True,
    ) -> PreTrainingOutput:
        # The sparse head takes the encoder's states at the masked positions only (and the
        # encoder may then prune its last layer); the full head projects every position.
        sparse = masked_positions is not None and self.cfg.sparse_mlm_head
        enc = self.bert(
            input_ids,
            token_type_ids,
            attention_mask,
            segment_ids=segment_ids,
            position_ids=position_ids,
            cls_positions=cls_positions,
            output_positions=masked_positions if sparse else None,
            deterministic=deterministic,
        )
        mlm_logits = self.mlm_head(
            enc.sequence_output, self.bert.attend, None if sparse else masked_positions
        )
        nsp_logits = self.nsp_head(enc.pooled_output)
        return PreTrainingOutput(enc.sequence_output, enc.pooled_output, mlm_logits, nsp_logits)


class BertForSequenceClassification(nn.Module):
    """The encoder with dropout + a linear layer on the pooled output.

    ``num_labels=1`` makes it a regression head (STS-B); logits are then ``[batch, 1]``.
    """

    cfg: BertConfig
    num_labels: int

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        enc = BertModel(self.cfg, name="bert")(
            input_ids,
            token_type_ids,
            attention_mask,
            # Only the pooled [CLS] state is read: the last layer may compute it alone.
            output_positions=jnp.zeros((input_ids.shape[0], 0), jnp.int32),
            deterministic=deterministic,
        )
        x = nn.Dropout(self.cfg.hidden_dropout)(enc.pooled_output, deterministic=deterministic)
        return dense(self.cfg, self.num_labels, ("embed", None), name="classifier")(x)


class BertForQuestionAnswering(nn.Module):
    """The encoder with a linear start/end span head on every token (SQuAD).

    Returns ``(start_logits, end_logits)``, each ``[batch, length]``; the head's kernel is
    ``[hidden, 2]`` (start first), as Hugging Face's ``qa_outputs`` and the original's
    ``cls/squad/output_weights``.
    """

    cfg: BertConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array]:
        enc = BertModel(self.cfg, name="bert")(
            input_ids, token_type_ids, attention_mask, deterministic=deterministic
        )
        logits = dense(self.cfg, 2, ("embed", None), name="qa_outputs")(enc.sequence_output)
        return logits[..., 0], logits[..., 1]


class BertForMultipleChoice(nn.Module):
    """One score per choice from each choice's pooled output (SWAG), as Hugging Face's
    ``BertForMultipleChoice``: inputs ``[batch, choices, length]``, logits ``[batch, choices]``;
    the head is a ``[hidden, 1]`` ``classifier``."""

    cfg: BertConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        batch, choices, length = input_ids.shape

        def rows(x):  # every choice is a row of its own for the encoder
            return None if x is None else x.reshape(batch * choices, length)

        enc = BertModel(self.cfg, name="bert")(
            rows(input_ids),
            rows(token_type_ids),
            rows(attention_mask),
            output_positions=jnp.zeros((batch * choices, 0), jnp.int32),
            deterministic=deterministic,
        )
        x = nn.Dropout(self.cfg.hidden_dropout)(enc.pooled_output, deterministic=deterministic)
        scores = dense(self.cfg, 1, ("embed", None), name="classifier")(x)
        return scores.reshape(batch, choices)


class BertForTokenClassification(nn.Module):
    """A label per token from its final hidden state (NER), as Hugging Face's
    ``BertForTokenClassification`` (no pooler): logits ``[batch, length, num_labels]``."""

    cfg: BertConfig
    num_labels: int

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        enc = BertModel(self.cfg, name="bert")(
            input_ids, token_type_ids, attention_mask, deterministic=deterministic
        )
        x = nn.Dropout(self.cfg.hidden_dropout)(enc.sequence_output, deterministic=deterministic)
        return dense(self.cfg, self.num_labels, ("embed", None), name="classifier")(x)
