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

    ``num_labels=1`` makes it a regression head (STS-B); logits are then ``[batch, 1]``. Packed
    rows (``segment_ids``, ``position_ids``, ``cls_positions`` [batch, slots]; see
    ``bert_jax.data.packing``) give logits per example slot, ``[batch, slots, num_labels]``.
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
        segment_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        cls_positions: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        enc = BertModel(self.cfg, name="bert")(
            input_ids,
            token_type_ids,
            attention_mask,
            segment_ids=segment_ids,
            position_ids=position_ids,
            cls_positions=cls_positions,
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

    ``bilstm`` puts a randomly initialised bidirectional LSTM (``hidden_size`` units per direction)
    between the encoder and the head: the paper's "+ BiLSTM" (Table 5), which gives a
    left-to-right (``cfg.causal``) encoder's tokens their right context back.
    """

    cfg: BertConfig
    bilstm: bool = False

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
        x = enc.sequence_output
        if self.bilstm:
            lengths = row_lengths(input_ids, attention_mask)
            x = BiLSTM(self.cfg.hidden_size, name="bilstm")(x, lengths)
        logits = dense(self.cfg, 2, ("embed", None), name="qa_outputs")(x)
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


# The encoder features of the paper's feature-based NER (Table 7), by name.
FEATURE_LAYERS = (
    "embeddings",  # the embedding layer's output
    "second_to_last",  # the second-to-last layer's output
    "last",  # the last layer's output
    "sum_last_four",  # a learned weighted sum of the last four layers
    "concat_last_four",  # the last four layers side by side (4 x hidden features)
    "sum_all",  # a learned weighted sum of every layer
)


def row_lengths(input_ids: jax.Array, attention_mask: jax.Array | None) -> jax.Array:
    """[batch] real tokens per row (padding at the end), for the LSTMs' ``seq_lengths``."""
    if attention_mask is None:
        return jnp.full(input_ids.shape[:1], input_ids.shape[1])
    return attention_mask.sum(-1)


class BiLSTM(nn.Module):
    """A bidirectional LSTM layer: ``[batch, length, features]`` -> ``[batch, length, 2 * size]``
    (forward and backward outputs side by side), each row read up to its ``lengths``."""

    size: int

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        return nn.Bidirectional(
            nn.RNN(nn.OptimizedLSTMCell(self.size, name="forward")),
            nn.RNN(nn.OptimizedLSTMCell(self.size, name="backward")),
        )(x, seq_lengths=lengths)


class BertFeatureTagger(nn.Module):
    """The paper's feature-based tagger (Table 7): features from a frozen encoder's layers feed a
    bidirectional LSTM of ``lstm_layers`` layers (``lstm_size`` units per direction) and a
    linear classifier; logits ``[batch, length, num_labels]``.

    The encoder runs without dropout and behind ``stop_gradient``: it is a fixed feature
    extractor (the optimizer must also leave it alone: the tagging family freezes ``bert``).
    ``features`` is one of :data:`FEATURE_LAYERS`; "last four" means the last
    ``min(4, num_layers)`` layers. A weighted sum is ELMo's scalar mix: softmax-normalised
    weights (uniform at initialisation) times a learned scale.

    Usage::

        model = BertFeatureTagger(cfg, num_labels=9, features="concat_last_four")
        logits = model.apply({"params": params}, ids, types, mask, deterministic=True)
    """

    cfg: BertConfig
    num_labels: int
    features: str = "concat_last_four"
    lstm_size: int = 768
    lstm_layers: int = 2
    dropout: float = 0.1

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        if self.features not in FEATURE_LAYERS:
            raise ValueError(
                f"Unknown features {self.features!r}; choose one of {list(FEATURE_LAYERS)}."
            )
        enc = BertModel(self.cfg, name="bert")(
            input_ids,
            token_type_ids,
            attention_mask,
            output_hidden_states=True,
            deterministic=True,
        )
        states = [jax.lax.stop_gradient(h) for h in enc.hidden_states]
        layers = states[1:]
        last_four = layers[-4:]
        if self.features == "embeddings":
            x = states[0]
        elif self.features == "second_to_last":
            x = states[-2]
        elif self.features == "last":
            x = states[-1]
        elif self.features == "concat_last_four":
            x = jnp.concatenate(last_four, axis=-1)
        else:
            mixed = last_four if self.features == "sum_last_four" else layers
            weights = self.param("layer_weights", nn.initializers.zeros_init(), (len(mixed),))
            scale = self.param("layer_scale", nn.initializers.ones_init(), ())
            weights = jax.nn.softmax(weights)
            x = scale * sum(w * h for w, h in zip(weights, mixed, strict=True))

        # The LSTMs read each row up to its length: the backward pass starts at the last real
        # token, not at the padding.
        lengths = row_lengths(input_ids, attention_mask)
        for i in range(self.lstm_layers):
            x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
            x = BiLSTM(self.lstm_size, name=f"lstm_{i}")(x, lengths)
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        return dense(self.cfg, self.num_labels, (None, None), name="classifier")(x)
