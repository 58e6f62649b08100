"""The BERT encoder as pure-functional Flax linen modules.

Every kernel carries logical axis names (``embed``, ``heads``, ``mlp``, ``vocab``) and every
large activation is constrained by logical names, so that one rules table (``bert_jax.sharding``)
decides how an experiment is parallelised.

Usage::

    cfg = BertConfig.from_name("base")
    model = BertModel(cfg)
    variables = model.init(rng, input_ids, deterministic=True)
    out = model.apply(variables, input_ids, token_type_ids, attention_mask, deterministic=True)
    out.sequence_output  # [batch, length, hidden]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# name -> (num_layers, hidden_size); heads = hidden / 64 and intermediate = 4 * hidden, as in the
# google-research/bert miniatures.
VARIANTS: dict[str, tuple[int, int]] = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}

ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # exact (erf), HF's "gelu"
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),  # the original TF code's
    "relu": jax.nn.relu,
}

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

ATTENTION_IMPLS = ("xla", "cudnn", "splash", None)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of the encoder and its heads. Hashable, so it can be a static argument."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: str = "float32"  # compute dtype of activations and matmuls
    param_dtype: str = "float32"  # storage dtype of the parameters (master weights)
    # "xla" (portable), "cudnn" (fused flash attention on GPU), "splash" (Pallas kernel with
    # segment ids, TPU) or None (let JAX choose). Attention dropout needs the probabilities, so
    # while it is active the explicit softmax path is used.
    attention_impl: str | None = "xla"
    # Memory and compile time: scan one compiled layer over stacked parameters (params then live
    # under bert/layers with a leading "layers" axis; `to_layer_layout` converts), and recompute
    # activations in the backward pass: "none", "full" (each layer) or "dots" (keep matmul
    # outputs, recompute the rest).
    scan_layers: bool = False
    remat: str = "none"
    # Project onto the vocabulary only at the masked positions (gather first): the largest matmul
    # of pretraining then runs on ~15% of the tokens. False computes every position, then gathers.
    sparse_mlm_head: bool = True
    # When the caller reads the final hidden states at a few positions only (the masked tokens
    # and [CLS] in pretraining, [CLS] in classification), the last layer computes its queries,
    # feed-forward and LayerNorms at those positions only (keys and values still come from every
    # token): at BERT-base seq 128, 20 predictions, 5% of the FLOPs of a training step.
    prune_last_layer: bool = True
    # Left context only: position t attends to positions <= t of its own segment (the paper's
    # "LTR" ablation, Table 5). Part of the architecture, so fine-tuning a causal checkpoint keeps
    # it. The pooler then reads each sequence's last real token: a causal [CLS] sees only itself.
    causal: bool = False

    def __post_init__(self):
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"Unknown hidden_act {self.hidden_act!r}; choose one of {sorted(ACTIVATIONS)}."
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}."
            )
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"Unknown attention_impl {self.attention_impl!r}; choose one of "
                f"{list(ATTENTION_IMPLS)} (None lets JAX choose)."
            )
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"Unknown remat {self.remat!r}; choose one of {list(REMAT_POLICIES)}.")
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in _DTYPES:
                raise ValueError(
                    f"Unknown {field} {getattr(self, field)!r}; use one of {list(_DTYPES)}."
                )

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> BertConfig:
        """A named size (tiny, mini, small, medium, base, large) with any field overridden.

        >>> BertConfig.from_name("large", hidden_act="gelu_tanh").num_layers
        24
        """
        if name not in VARIANTS:
            raise ValueError(f"Unknown model {name!r}; choose one of {list(VARIANTS)}.")
        layers, hidden = VARIANTS[name]
        sizes = dict(
            num_layers=layers,
            hidden_size=hidden,
            num_heads=hidden // 64,
            intermediate_size=4 * hidden,
        )
        return cls(**{**sizes, **overrides})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BertConfig:
        """Builds a config from a mapping, rejecting unknown fields by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"Unknown BertConfig fields {sorted(unknown)}; known: {sorted(known)}."
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def weight_dtype(self):
        return _DTYPES[self.param_dtype]


def _normal(cfg: BertConfig, axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(cfg.initializer_range), axes)


def _zeros(axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def dense(
    cfg: BertConfig, features: int, kernel_axes: tuple[str | None, ...], name: str | None = None
) -> nn.Dense:
    """A Dense layer whose [in, out] kernel and [out] bias carry logical axis names."""
    return nn.Dense(
        features,
        dtype=cfg.compute_dtype,
        param_dtype=cfg.weight_dtype,
        kernel_init=_normal(cfg, kernel_axes),
        bias_init=_zeros(kernel_axes[-1:]),
        name=name,
    )


def layer_norm(cfg: BertConfig, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        dtype=cfg.compute_dtype,
        param_dtype=cfg.weight_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
        bias_init=_zeros(("norm",)),
        name=name,
    )


def constrain(x: jax.Array, *axes: str | None) -> jax.Array:
    return nn.with_logical_constraint(x, axes)


def attention_mask_from_segments(
    segment_ids: jax.Array,
    query_segment_ids: jax.Array | None = None,
    *,
    causal: bool = False,
    query_positions: jax.Array | None = None,
) -> jax.Array:
    """[batch, 1, q, k] boolean mask from segment ids (0 = padding).

    A query attends to the keys of its own segment; padding keys are never attended to. Padding
    queries (segment 0) attend to every real key, as Hugging Face's and the original BERT's padding
    mask do, so their (unused) outputs match those implementations too. The same mask serves plain
    padded batches (segment ids = attention_mask) and packed ones (one id per sentence pair).
    ``segment_ids`` [batch, k] are the keys'; ``query_segment_ids`` [batch, q] the queries', when
    only some positions are queried (default: every position is). With ``causal`` a query also
    sees no key after its own position (``query_positions`` [batch, q], default 0 ... q-1), so a
    packed row is causal within each of its segments.
    """
    q = (segment_ids if query_segment_ids is None else query_segment_ids)[:, :, None]
    k = segment_ids[:, None, :]
    mask = ((q == k) | (q == 0)) & (k != 0)
    if causal:  # per segment, since a query already attends inside its own segment only
        if query_positions is None:
            query_positions = jnp.arange(q.shape[1])[None]
        mask &= query_positions[:, :, None] >= jnp.arange(k.shape[2])[None, None, :]
    return mask[:, None, :, :]


def splash_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, causal: bool = False
) -> jax.Array:
    """Pallas splash attention (TPU) with segment ids: padding and packing in one kernel
    (``causal``: left context only, within each segment).

    q, k, v are [batch, length, heads, head_dim]; length must be a multiple of 128. Each device
    runs the kernel on its own rows and heads (``shard_map`` over the active mesh: batch over
    data and fsdp, heads over tensor). Off TPU the kernel runs in Pallas' interpreter, for tests.
    Real tokens get exactly the attention of the other implementations; padding positions attend
    among themselves instead of to every real token (their outputs are never used).
    """
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks
    from jax.sharding import PartitionSpec as P

    batch, length, heads, head_dim = q.shape
    if length % 128:
        raise ValueError(
            f"attention_impl='splash' needs a length that is a multiple of 128, got {length}."
        )
    mesh = jax.sharding.get_abstract_mesh()
    head_shards = mesh.shape.get("tensor", 1) if not mesh.empty else 1
    mask = (masks.CausalMask if causal else masks.FullMask)((length, length))
    kernel = splash.make_splash_mha(
        masks.MultiHeadMask([mask] * (heads // head_shards)),
        head_shards=1,
        q_seq_shards=1,
        interpret=jax.default_backend() != "tpu",
    )

    def attend(q, k, v, segments):  # [b, heads, length, head_dim] blocks of one device
        ids = splash.SegmentIds(q=segments, kv=segments)
        return jax.vmap(kernel)(q, k, v, segment_ids=ids)

    q = q * (1.0 / jnp.sqrt(head_dim)).astype(q.dtype)
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    if not mesh.empty:
        rows, cols = P(("data", "fsdp"), "tensor", None, None), P(("data", "fsdp"), None)
        attend = jax.shard_map(
            attend, mesh=mesh, in_specs=(rows, rows, rows, cols), out_specs=rows, check_vma=False
        )
    return attend(q, k, v, segment_ids).transpose(0, 2, 1, 3)


class Embeddings(nn.Module):
    cfg: BertConfig

    def setup(self):
        cfg = self.cfg

        def embed(num, axes):
            return nn.Embed(
                num,
                cfg.hidden_size,
                dtype=cfg.compute_dtype,
                param_dtype=cfg.weight_dtype,
                embedding_init=_normal(cfg, axes),
            )

        self.word_embeddings = embed(cfg.vocab_size, ("vocab", "embed"))
        self.position_embeddings = embed(cfg.max_position_embeddings, (None, "embed"))
        self.token_type_embeddings = embed(cfg.type_vocab_size, (None, "embed"))
        self.layer_norm = layer_norm(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool):
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )
        x = self.dropout(self.layer_norm(x), deterministic=deterministic)
        return constrain(x, "activation_batch", "activation_length", "activation_embed")

    def attend(self, x: jax.Array) -> jax.Array:
        """Projects hidden states onto the vocabulary through the (tied) word embeddings."""
        return self.word_embeddings.attend(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention. Kernels are [hidden, heads * head_dim] as in the released
    checkpoints; the joined "heads" axis is what tensor parallelism splits."""

    cfg: BertConfig

    @nn.compact
    def __call__(
        self, queries, x, query_segment_ids, segment_ids, deterministic: bool, query_positions=None
    ):
        """``queries`` [batch, q, hidden] attend to ``x`` [batch, k, hidden] (q = k, or fewer
        queries in a pruned last layer, at ``query_positions``); segment ids as in
        `attention_mask_from_segments`."""
        cfg = self.cfg

        def project(name, inputs):
            y = dense(cfg, cfg.hidden_size, ("embed", "heads"), name=name)(inputs)
            y = y.reshape(*inputs.shape[:2], cfg.num_heads, cfg.head_dim)
            return constrain(y, "activation_batch", "activation_length", "activation_heads", None)

        q, k, v = project("query", queries), project("key", x), project("value", x)
        mask = attention_mask_from_segments(
            segment_ids, query_segment_ids, causal=cfg.causal, query_positions=query_positions
        )
        if not deterministic and cfg.attention_dropout > 0.0:
            # Dropout on the attention probabilities needs them explicitly.
            logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(cfg.head_dim).astype(q.dtype)
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
            probs = jax.nn.softmax(logits.astype(jnp.float32)).astype(q.dtype)
            probs = nn.Dropout(cfg.attention_dropout)(probs, deterministic=False)
            y = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        elif q.shape[1] != k.shape[1]:
            # A pruned layer's few queries: splash needs q = k, and the work is small; JAX picks.
            y = jax.nn.dot_product_attention(q, k, v, mask=mask)
        elif cfg.attention_impl == "splash":
            y = splash_attention(q, k, v, segment_ids, cfg.causal)
        else:
            y = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=cfg.attention_impl)
        y = constrain(y, "activation_batch", "activation_length", "activation_heads", None)
        y = y.reshape(*queries.shape)
        return dense(cfg, cfg.hidden_size, ("heads", "embed"), name="output")(y)


class TransformerLayer(nn.Module):
    """One post-LayerNorm Transformer layer, as in the original BERT."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x, segment_ids, deterministic: bool, output_positions=None):
        """[batch, length, hidden] -> the same shape, or [batch, n, hidden] at
        ``output_positions`` [batch, n] (attending to every position, computing only those)."""
        cfg = self.cfg
        dropout = nn.Dropout(cfg.hidden_dropout)
        queries, query_segment_ids = x, None
        if output_positions is not None:
            queries = jnp.take_along_axis(x, output_positions[..., None], axis=1)
            query_segment_ids = jnp.take_along_axis(segment_ids, output_positions, axis=1)
        y = SelfAttention(cfg, name="attention")(
            queries, x, query_segment_ids, segment_ids, deterministic, output_positions
        )
        x = layer_norm(cfg, "attention_layer_norm")(
            queries + dropout(y, deterministic=deterministic)
        )
        x = constrain(x, "activation_batch", "activation_length", "activation_embed")
        h = dense(cfg, cfg.intermediate_size, ("embed", "mlp"), name="intermediate")(x)
        h = ACTIVATIONS[cfg.hidden_act](h)
        h = constrain(h, "activation_batch", "activation_length", "activation_mlp")
        y = dense(cfg, cfg.hidden_size, ("mlp", "embed"), name="output")(h)
        x = layer_norm(cfg, "output_layer_norm")(x + dropout(y, deterministic=deterministic))
        return constrain(x, "activation_batch", "activation_length", "activation_embed")


class _ScanStep(nn.Module):
    """One layer as an ``nn.scan`` step: carries the hidden states, shares segments and mode;
    with ``collect`` it also emits each layer's output (stacked by the scan)."""

    cfg: BertConfig
    layer: type[nn.Module]

    @nn.compact
    def __call__(self, x, segment_ids, deterministic, collect=False):
        x = self.layer(self.cfg, name="layer")(x, segment_ids, deterministic)
        return x, (x if collect else None)


def to_layer_layout(params: Mapping[str, Any], scan_layers: bool) -> dict[str, Any]:
    """Converts a parameter tree between one subtree per layer (``bert/layer_{i}``, the layout of
    checkpoints and interop) and the layout of ``scan_layers``: layers 0 to L-2 stacked under
    ``bert/layers/layer``, the last one still ``bert/layer_{L-1}`` (``prune_last_layer`` runs it
    with other shapes).

    Trees already in the requested layout come back unchanged.
    """
    bert = dict(params["bert"])
    if scan_layers and "layers" not in bert:
        per_layer = sorted((k for k in bert if k.startswith("layer_")), key=lambda k: int(k[6:]))
        if len(per_layer) > 1:
            stacked = jax.tree.map(
                lambda *xs: jnp.stack(xs), *(bert.pop(k) for k in per_layer[:-1])
            )
            bert["layers"] = {"layer": stacked}
    elif not scan_layers and "layers" in bert:
        stacked = bert.pop("layers")["layer"]
        num_scanned = jax.tree.leaves(stacked)[0].shape[0]
        for i in range(num_scanned):
            bert[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    return {**params, "bert": bert}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class EncoderOutput:
    sequence_output: jax.Array  # [batch, length, hidden], or [batch, n, hidden] at output_positions
    pooled_output: jax.Array  # [batch, hidden]: tanh(dense(hidden state of [CLS]))
    # With output_hidden_states: the embeddings' output, then every layer's, each [batch, length,
    # hidden] (num_layers + 1 arrays, as Hugging Face's ``hidden_states``); else None.
    hidden_states: tuple[jax.Array, ...] | None = None


class BertModel(nn.Module):
    """Embeddings, ``num_layers`` Transformer layers and the pooler.

    ``attention_mask`` (1 = token, 0 = padding) is the usual padding mask. For packed rows, pass
    ``segment_ids`` instead (one id per packed sentence pair, 0 = padding) and ``position_ids`` that
    restart in every pair; attention then stays inside each pair.

    ``output_positions`` [batch, n] asks for the final hidden states at those positions only
    (``sequence_output`` is then [batch, n, hidden]; n may be 0 when only the pooled output is
    read). With ``cfg.prune_last_layer`` the last layer then computes just those positions and
    the [CLS] tokens, when they are fewer than the whole row.

    ``output_hidden_states=True`` also returns every layer's output (``hidden_states``), for
    feature-based use of the encoder (the paper's Table 7); it needs every position, so it does
    not combine with ``output_positions``.
    """

    cfg: BertConfig

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg)
        layer = TransformerLayer
        if cfg.remat != "none":
            # argnum 3 (counting self) is `deterministic`, a Python bool.
            layer = nn.remat(layer, policy=REMAT_POLICIES[cfg.remat], static_argnums=(3,))
        # scan_layers scans all layers but the last, which prune_last_layer runs with other shapes.
        num_scanned = cfg.num_layers - 1 if cfg.scan_layers else 0
        self.scanned_layers = None
        if num_scanned:
            self.scanned_layers = nn.scan(
                _ScanStep,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                length=num_scanned,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, layer, name="layers")
        self.layers = [layer(cfg, name=f"layer_{i}") for i in range(num_scanned, cfg.num_layers)]
        self.pooler = dense(cfg, cfg.hidden_size, ("embed", None), name="pooler")

    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        *,
        segment_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        cls_positions: jax.Array | None = None,
        output_positions: jax.Array | None = None,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ) -> EncoderOutput:
        if output_hidden_states and output_positions is not None:
            raise ValueError(
                "output_hidden_states returns every position of every layer; drop "
                "output_positions (which prunes the last layer to a few positions)."
            )
        batch, length = input_ids.shape
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(length), (batch, length))
        if segment_ids is None:
            segment_ids = jnp.ones_like(input_ids) if attention_mask is None else attention_mask
        x = self.embeddings(input_ids, token_type_ids, position_ids, deterministic)
        hidden_states = [x]
        if self.scanned_layers is not None:
            x, stacked = self.scanned_layers(x, segment_ids, deterministic, output_hidden_states)
            if output_hidden_states:
                hidden_states += list(stacked)
        for layer in self.layers[:-1]:
            x = layer(x, segment_ids, deterministic)
            hidden_states.append(x)

        # The pooler reads the [CLS] token of each sequence (of each packed pair when packed); a
        # causal model's [CLS] has seen only itself, so it reads the last real token, which has
        # seen the whole sequence (as left-to-right classifiers do).
        if cls_positions is not None:
            cls = cls_positions
            if self.cfg.causal:  # each packed sequence's last token: its [CLS] + its length - 1
                own = jnp.take_along_axis(segment_ids, cls, axis=1)
                lengths = (segment_ids[:, None, :] == own[:, :, None]).sum(-1)
                cls = (cls + jnp.maximum(lengths - 1, 0)).astype(jnp.int32)
        elif self.cfg.causal:
            cls = jnp.maximum((segment_ids != 0).sum(-1, keepdims=True) - 1, 0).astype(jnp.int32)
        else:
            cls = jnp.zeros((batch, 1), jnp.int32)
        prune = (
            self.cfg.prune_last_layer
            and output_positions is not None
            and cls.shape[1] + output_positions.shape[1] < length
        )
        if prune:
            both = jnp.concatenate([cls, output_positions.astype(cls.dtype)], axis=1)
            x = self.layers[-1](x, segment_ids, deterministic, both)
            cls_states, x = jnp.split(x, [cls.shape[1]], axis=1)
        else:
            x = self.layers[-1](x, segment_ids, deterministic)
            cls_states = jnp.take_along_axis(x, cls[..., None], axis=1)
            if output_positions is not None:
                x = jnp.take_along_axis(x, output_positions[..., None], axis=1)
        if cls_positions is None:
            cls_states = cls_states[:, 0]
        pooled = jnp.tanh(self.pooler(cls_states))
        if not output_hidden_states:
            return EncoderOutput(sequence_output=x, pooled_output=pooled)
        return EncoderOutput(x, pooled, hidden_states=(*hidden_states, x))

    def attend(self, x: jax.Array) -> jax.Array:
        return self.embeddings.attend(x)
