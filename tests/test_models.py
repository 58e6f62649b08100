"""The encoder and heads: shapes, options, and sharded execution equal to single-device."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax.models.bert import BertConfig, BertModel, attention_mask_from_segments
from bert_jax.models.heads import BertForPreTraining, BertForSequenceClassification
from bert_jax.sharding import DEFAULT_RULES, make_mesh, resolve_mesh_shape, use_mesh
from bert_jax.train import create_train_state

CFG = BertConfig.from_name(
    "tiny",
    vocab_size=96,
    num_heads=4,
    max_position_embeddings=32,
    hidden_dropout=0.0,
    attention_dropout=0.0,
)


def _inputs(batch=8, length=16, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, CFG.vocab_size, (batch, length)).astype(np.int32)
    types = (np.arange(length) >= length // 2).astype(np.int32)[None].repeat(batch, 0)
    lengths = rng.integers(length // 2, length + 1, batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    positions = np.sort(rng.choice(length // 2, (batch, 3), replace=True), axis=1).astype(np.int32)
    return dict(
        input_ids=ids, token_type_ids=types, attention_mask=mask, masked_positions=positions
    )


def test_variants_and_overrides():
    assert BertConfig.from_name("large").num_heads == 16
    assert BertConfig.from_name("mini", hidden_act="gelu_tanh").hidden_act == "gelu_tanh"
    with pytest.raises(ValueError, match="Unknown model 'huge'.*tiny"):
        BertConfig.from_name("huge")
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_name("tiny", hidden_act="swishy")
    with pytest.raises(ValueError, match="not divisible"):
        BertConfig.from_name("tiny", num_heads=3)
    with pytest.raises(ValueError, match="Unknown attention_impl 'flash'.*cudnn"):
        BertConfig.from_name("tiny", attention_impl="flash")


def test_segment_mask_matches_padding_and_packing_semantics():
    seg = jnp.array([[1, 1, 2, 2, 0]])
    m = np.asarray(attention_mask_from_segments(seg))[0, 0]
    assert m[0].tolist() == [True, True, False, False, False]  # stays in its pair
    assert m[2].tolist() == [False, False, True, True, False]
    assert m[4].tolist() == [True, True, True, True, False]  # padding query: every real key


def test_masked_positions_gather_equals_full_head():
    model = BertForPreTraining(CFG)
    x = _inputs()
    params = model.init(jax.random.key(0), x["input_ids"])["params"]
    full = model.apply(
        {"params": params}, **{k: v for k, v in x.items() if k != "masked_positions"}
    )
    sparse = model.apply({"params": params}, **x)
    expected = np.take_along_axis(np.asarray(full.mlm_logits), x["masked_positions"][..., None], 1)
    np.testing.assert_allclose(sparse.mlm_logits, expected, atol=1e-5)
    # The config switch: the full head, gathered after the projection, is the same function.
    dense_head = BertForPreTraining(dataclasses.replace(CFG, sparse_mlm_head=False))
    np.testing.assert_allclose(
        dense_head.apply({"params": params}, **x).mlm_logits, expected, atol=1e-5
    )
    assert full.nsp_logits.shape == (8, 2)


def test_classifier_and_bf16_compute_keep_fp32_params():
    cfg = BertConfig.from_name("tiny", vocab_size=96, dtype="bfloat16")
    model = BertForSequenceClassification(cfg, num_labels=3)
    x = _inputs()
    params = model.init(jax.random.key(0), x["input_ids"])["params"]
    assert {p.dtype for p in jax.tree.leaves(nn.unbox(params))} == {jnp.dtype("float32")}
    logits = model.apply(
        {"params": params}, x["input_ids"], x["token_type_ids"], x["attention_mask"]
    )
    assert logits.shape == (8, 3) and logits.dtype == jnp.bfloat16


def test_attention_dropout_path_equals_fused_path_when_inactive():
    """The explicit-softmax path (used for attention dropout) computes the same function."""
    cfg_drop = BertConfig.from_name(
        "tiny", vocab_size=96, attention_dropout=0.1, hidden_dropout=0.0
    )
    model = BertModel(cfg_drop)
    x = _inputs()
    params = model.init(jax.random.key(0), x["input_ids"])["params"]
    fused = model.apply({"params": params}, x["input_ids"], attention_mask=x["attention_mask"])
    explicit = BertModel(
        BertConfig.from_name("tiny", vocab_size=96, attention_dropout=1e-30, hidden_dropout=0.0)
    ).apply(
        {"params": params},
        x["input_ids"],
        attention_mask=x["attention_mask"],
        deterministic=False,
        rngs={"dropout": jax.random.key(1)},
    )
    np.testing.assert_allclose(fused.sequence_output, explicit.sequence_output, atol=1e-5)


def test_mesh_shape_resolution():
    assert resolve_mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
    assert resolve_mesh_shape((2, -1, 2), 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="at most one -1"):
        resolve_mesh_shape((-1, -1, 1), 8)
    with pytest.raises(ValueError, match="8 are available"):
        resolve_mesh_shape((2, 2, 1), 8)


def test_sharded_outputs_equal_single_device():
    """State created sharded on a (2,2,2) mesh gives the single-device outputs."""
    model = BertForPreTraining(CFG)
    x = {k: jnp.asarray(v) for k, v in _inputs().items()}

    def init_params(rng):
        return model.init(rng, x["input_ids"])["params"]

    def run(mesh):
        import optax

        state, shardings = create_train_state(init_params, optax.sgd(0.1), mesh, DEFAULT_RULES, 0)
        with use_mesh(mesh, DEFAULT_RULES):
            out = jax.jit(lambda p, b: model.apply({"params": p}, **b))(state.params, x)
        return state, jax.device_get(out)

    mesh8 = make_mesh((2, 2, 2))
    state8, out8 = run(mesh8)
    state1, out1 = run(make_mesh((1, 1, 1), jax.devices()[:1]))
    # The parameters are really split: heads over tensor, hidden over fsdp.
    q = state8.params["bert"]["layer_0"]["attention"]["query"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert len({s.device for s in q.addressable_shards}) == 8
    for a, b in zip(jax.tree.leaves(out8), jax.tree.leaves(out1), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)


def test_base_parameter_count_equals_transformers():
    import transformers

    shapes = jax.eval_shape(
        lambda: BertForPreTraining(BertConfig.from_name("base")).init(
            jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
        )
    )
    ours = sum(x.size for x in jax.tree.leaves(nn.unbox(shapes["params"])))
    with jax.default_device(jax.devices("cpu")[0]):
        hf = transformers.BertForPreTraining(transformers.BertConfig())
    assert ours == sum(p.numel() for p in hf.parameters()) == 110_106_428


def test_scan_and_remat_compute_the_same_function():
    """Scanned and rematerialised layers give the plain model's outputs and gradients."""
    from bert_jax.models.bert import to_layer_layout

    x = {k: jnp.asarray(v) for k, v in _inputs().items()}
    plain = BertForPreTraining(CFG)
    params = nn.unbox(plain.init(jax.random.key(0), x["input_ids"])["params"])

    def loss(model, p):
        out = model.apply({"params": p}, **x)
        return out.mlm_logits.sum() + out.nsp_logits.sum(), out

    (ref_loss, ref_out), ref_grads = jax.value_and_grad(lambda p: loss(plain, p), has_aux=True)(
        params
    )
    for options in (
        dict(scan_layers=True),
        dict(remat="full"),
        dict(scan_layers=True, remat="dots"),
    ):
        cfg = dataclasses.replace(CFG, **options)
        model = BertForPreTraining(cfg)
        p = to_layer_layout(params, cfg.scan_layers)
        shapes = jax.eval_shape(model.init, jax.random.key(0), x["input_ids"])["params"]
        assert jax.tree.structure(nn.unbox(shapes)) == jax.tree.structure(p), options
        (value, out), grads = jax.value_and_grad(functools.partial(loss, model), has_aux=True)(p)
        np.testing.assert_allclose(value, ref_loss, rtol=1e-5)
        np.testing.assert_allclose(out.sequence_output, ref_out.sequence_output, atol=1e-5)
        back = to_layer_layout(grads, scan_layers=False)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(ref_grads), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    assert to_layer_layout(to_layer_layout(params, True), False).keys() == params.keys()


def _packed(x):
    """The rows of ``x`` packed as two pairs each: [CLS] of pair 2 at the middle, then padding."""
    batch, length = x["input_ids"].shape
    half = length // 2
    segments = np.where(np.arange(length) < half, 1, 2)[None].repeat(batch, 0)
    segments = segments * np.asarray(x["attention_mask"])
    return dict(
        input_ids=x["input_ids"],
        token_type_ids=x["token_type_ids"],
        masked_positions=x["masked_positions"],
        segment_ids=jnp.asarray(segments),
        position_ids=jnp.asarray(np.arange(length) % half)[None].repeat(batch, 0),
        cls_positions=jnp.asarray([[0, half]] * batch, jnp.int32),
    )


@pytest.mark.parametrize("scan_layers", [False, True])
def test_pruned_last_layer_computes_the_same_function(scan_layers):
    """The last layer computed at the masked positions and [CLS] only gives the full model's
    MLM and NSP logits and gradients: plain and packed rows, pretraining and classification."""
    from bert_jax.models.bert import to_layer_layout

    full_cfg = dataclasses.replace(CFG, scan_layers=scan_layers, prune_last_layer=False)
    pruned_cfg = dataclasses.replace(full_cfg, prune_last_layer=True)
    plain = {k: jnp.asarray(v) for k, v in _inputs().items()}
    params = nn.unbox(BertForPreTraining(CFG).init(jax.random.key(0), plain["input_ids"]))
    params = to_layer_layout(params["params"], scan_layers)

    def logits_and_grads(cfg, x):
        def loss(p):
            out = BertForPreTraining(cfg).apply({"params": p}, **x)
            return (out.mlm_logits**2).sum() + (out.nsp_logits**2).sum(), out

        (_, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return (out.mlm_logits, out.nsp_logits), grads

    for x in (plain, _packed(plain)):
        expected = logits_and_grads(full_cfg, x)
        pruned = logits_and_grads(pruned_cfg, x)
        assert pruned[0][1].shape == ((8, 2) if x is plain else (8, 2, 2))
        for a, b in zip(jax.tree.leaves(pruned), jax.tree.leaves(expected), strict=True):
            # fp32 sums in another order: the tolerance scales with each array's magnitude (the
            # gradients of a squared-logit loss reach the hundreds).
            np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, np.abs(b).max()), rtol=1e-5)

    classifier = BertForSequenceClassification(CFG, num_labels=3)
    params = classifier.init(jax.random.key(0), plain["input_ids"])["params"]
    params = to_layer_layout(nn.unbox(params), scan_layers)
    args = (plain["input_ids"], plain["token_type_ids"], plain["attention_mask"])
    expected, pruned = (
        BertForSequenceClassification(cfg, num_labels=3).apply({"params": params}, *args)
        for cfg in (full_cfg, pruned_cfg)
    )
    np.testing.assert_allclose(pruned, expected, atol=1e-5, rtol=1e-5)


def test_splash_attention_equals_xla_on_real_tokens():
    """The TPU kernel (Pallas' interpreter here), under shard_map on a (2,1,2) mesh: outputs and
    gradients at real tokens equal the XLA path's, for padded and for packed rows."""
    cfg = dataclasses.replace(CFG, max_position_embeddings=128)
    x = {k: jnp.asarray(v) for k, v in _inputs(batch=4, length=128).items()}
    segments = np.asarray(x["attention_mask"]).copy()
    segments[0, 40:100] = 2  # a packed row: two pairs, then padding
    segments[0, 100:] = 0
    x["segment_ids"], real = jnp.asarray(segments), segments > 0
    del x["attention_mask"], x["masked_positions"]  # every position's output is compared
    params = nn.unbox(BertForPreTraining(cfg).init(jax.random.key(0), x["input_ids"])["params"])

    def run(impl):
        model = BertForPreTraining(dataclasses.replace(cfg, attention_impl=impl))

        def loss(p):
            out = model.apply({"params": p}, **x)
            return (out.sequence_output * real[..., None]).sum(), out.sequence_output

        mesh = make_mesh((2, 1, 2), jax.devices()[:4])
        with use_mesh(mesh, DEFAULT_RULES):
            return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (_, splash_out), splash_grads = run("splash")
    (_, xla_out), xla_grads = run("xla")
    np.testing.assert_allclose(
        np.asarray(splash_out)[real], np.asarray(xla_out)[real], atol=2e-5, rtol=1e-5
    )
    for a, b in zip(jax.tree.leaves(splash_grads), jax.tree.leaves(xla_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_causal_outputs_see_only_the_left_of_their_own_segment():
    """A causal model's output at t depends on the tokens at or before t of t's segment only:
    plain rows, packed rows (the second pair sees nothing of the first), and a pruned last layer
    at a few positions; its pooler reads the last real token, which has seen the whole row."""
    cfg = dataclasses.replace(CFG, causal=True)
    model = BertForPreTraining(cfg)
    plain = {k: jnp.asarray(v) for k, v in _inputs().items()}
    params = nn.unbox(model.init(jax.random.key(0), plain["input_ids"])["params"])
    apply = jax.jit(lambda x: model.apply({"params": params}, **x))

    def changed_after(x, positions):  # other tokens at these positions
        ids = x["input_ids"].at[:, positions].set((x["input_ids"][:, positions] + 7) % 96)
        return {**x, "input_ids": ids}

    full = {k: v for k, v in plain.items() if k != "masked_positions"}
    later = np.arange(8, 16)  # every masked position of _inputs is before 8
    base, changed = apply(full), apply(changed_after(full, later))
    before, after = base.sequence_output, changed.sequence_output
    np.testing.assert_allclose(after[:, :8], before[:, :8])
    assert not np.allclose(after[:, 8:], before[:, 8:])
    # The last layer computed at the masked positions alone masks as the full one does.
    sparse = apply(changed_after(plain, later)).mlm_logits
    positions = plain["masked_positions"][..., None]
    np.testing.assert_allclose(sparse, np.take_along_axis(base.mlm_logits, positions, 1), atol=1e-5)
    last = np.asarray(plain["attention_mask"]).sum(-1) - 1
    pooler = params["bert"]["pooler"]
    states = np.asarray(base.sequence_output)[np.arange(8), last]
    np.testing.assert_allclose(
        base.pooled_output, np.tanh(states @ pooler["kernel"] + pooler["bias"]), atol=1e-5
    )

    # Pairs at 0-7 and 8-15 (every position's output); change each pair's second half.
    packed = {k: v for k, v in _packed(plain).items() if k != "masked_positions"}
    base, changed = apply(packed), apply(changed_after(packed, [4, 5, 6, 7, 12, 13, 14, 15]))
    kept = np.isin(np.arange(16), [0, 1, 2, 3, 8, 9, 10, 11]) & (packed["segment_ids"] > 0)
    np.testing.assert_allclose(changed.sequence_output[kept], base.sequence_output[kept])


def test_causal_splash_kernel_equals_the_mask_path():
    """Splash's causal mask with segment ids (Pallas' interpreter here) attends as the causal
    segment mask does, at every real token of a row with two segments and padding."""
    from bert_jax.models.bert import splash_attention

    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 128, 2, 16)), jnp.float32) for _ in "qkv")
    segments = np.repeat([1, 2, 0], [50, 50, 28])[None]
    mask = attention_mask_from_segments(jnp.asarray(segments), causal=True)
    expected = jax.nn.dot_product_attention(q, k, v, mask=mask)
    ours = splash_attention(q, k, v, jnp.asarray(segments), causal=True)
    real = segments > 0
    np.testing.assert_allclose(np.asarray(ours)[real], np.asarray(expected)[real], atol=1e-5)
