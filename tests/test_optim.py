"""bert_jax.optim against independent references: closed forms of the original schedule,
transformers' schedules, torch.optim.AdamW, a torch port of the original AdamWeightDecay, and a
numpy LAMB."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import transformers

from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.optim import decay_mask, make_optimizer, make_schedule
from tests.torch_reference import AdamWeightDecay, original_bert_lr

PEAK, TOTAL, WARMUP, WD, STEPS = 1e-2, 10, 3, 0.1, 10


def original_lr(t, peak=PEAK, total=TOTAL, warmup=WARMUP, end=0.0, power=1.0):
    return original_bert_lr(t, peak, total, warmup, end, power)


def original_excluded(name):
    """The original AdamWeightDecay rule: exclude_from_weight_decay regexes on the variable name."""
    return any(re.search(r, name) for r in ["LayerNorm", "layer_norm", "bias"])


def names_and_leaves(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("/".join(k.key for k in path), leaf) for path, leaf in flat]


def small_params(seed=0):
    """A BERT-shaped tree: every leaf kind the models produce, shapes divisible by 8 on axis 0."""
    rng = np.random.default_rng(seed)

    def arr(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {
        "embeddings": {
            "word_embeddings": {"embedding": arr(16, 4)},
            "layer_norm": {"scale": 1.0 + 0.1 * arr(8), "bias": arr(8)},
        },
        "layer_0": {
            "attention": {"query": {"kernel": arr(8, 2, 2), "bias": arr(8, 2)}},
            "output_layer_norm": {"scale": 1.0 + 0.1 * arr(8), "bias": arr(8)},
        },
        "mlm_head": {"output_bias": arr(16)},
    }


def random_grads(params, steps, seed=1):
    """Per-step grads; odd steps are scaled up so that clipping at 1.0 triggers only on those."""
    rng = np.random.default_rng(seed)
    scales = [1.0 if t % 2 else 0.02 for t in range(steps)]
    noise = [jax.tree.map(lambda p: rng.normal(size=p.shape), params) for _ in scales]
    return [
        optax.tree.cast(optax.tree.scale(s, n), jnp.float32)
        for s, n in zip(scales, noise, strict=True)
    ]


def run_optax(tx, params, grads_list):
    update = jax.jit(tx.update)
    state = tx.init(params)
    history = []
    for grads in grads_list:
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history


def assert_close_to_torch(history, torch_history, atol=1e-6):
    for step, (ours, theirs) in enumerate(zip(history, torch_history, strict=True)):
        for (name, leaf), ref in zip(names_and_leaves(ours), theirs, strict=True):
            np.testing.assert_allclose(
                np.asarray(leaf), ref, atol=atol, rtol=0, err_msg=f"step {step}: {name}"
            )


# ----------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("end", "power", "warmup"), [(0.0, 1.0, WARMUP), (1e-3, 2.0, 4), (0.0, 1.0, 0)]
)
def test_bert_schedule_matches_original_closed_form(end, power, warmup):
    s = make_schedule("bert", PEAK, TOTAL, warmup, end_lr=end, power=power)
    jitted = jax.jit(s)
    for t in range(TOTAL + 5):
        expected = original_lr(t, warmup=warmup, end=end, power=power)
        np.testing.assert_allclose(float(s(t)), expected, rtol=1e-6, atol=1e-9, err_msg=f"t={t}")
        np.testing.assert_allclose(float(jitted(jnp.int32(t))), expected, rtol=1e-6, atol=1e-9)
    if warmup:
        # Warmup replaces, not shifts, the decay: right after warmup the rate is below the peak.
        assert float(s(warmup)) < PEAK


def _transformers_lrs(make, steps):
    """Learning rate used by each optimizer.step() under a transformers LambdaLR schedule."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize(
    ("kind", "kwargs", "make"),
    [
        (
            "polynomial",
            {},
            lambda o: transformers.get_linear_schedule_with_warmup(o, WARMUP, TOTAL),
        ),
        (
            "polynomial",
            {"end_lr": 1e-3, "power": 2.0},
            lambda o: transformers.get_polynomial_decay_schedule_with_warmup(
                o, WARMUP, TOTAL, lr_end=1e-3, power=2.0
            ),
        ),
        ("constant", {}, lambda o: transformers.get_constant_schedule_with_warmup(o, WARMUP)),
    ],
)
def test_schedules_match_transformers(kind, kwargs, make):
    s = make_schedule(kind, PEAK, TOTAL, WARMUP, **kwargs)
    expected = _transformers_lrs(make, TOTAL + 3)
    np.testing.assert_allclose([float(s(t)) for t in range(TOTAL + 3)], expected, rtol=1e-6)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown schedule kind 'cosine'.*bert"):
        make_schedule("cosine", PEAK, TOTAL, WARMUP)
    with pytest.raises(ValueError, match="warmup_steps=11"):
        make_schedule("bert", PEAK, TOTAL, 11)
    with pytest.raises(ValueError, match="total_steps must be positive"):
        make_schedule("bert", PEAK, 0, 0)
    with pytest.raises(ValueError, match="lower warmup_steps"):
        make_schedule("polynomial", PEAK, TOTAL, TOTAL)


# ---------------------------------------------------------------------------------- decay mask


def test_decay_mask_on_bert_params_matches_original_rule():
    cfg = BertConfig.from_name("tiny", vocab_size=32, num_layers=1)
    ids = jnp.zeros((1, 8), jnp.int32)
    boxed = jax.eval_shape(
        lambda: BertForPreTraining(cfg).init(jax.random.key(0), ids, deterministic=True)
    )["params"]
    plain = nn.unbox(boxed)
    expected = [not original_excluded(name) for name, _ in names_and_leaves(plain)]
    assert jax.tree.leaves(decay_mask(plain)) == expected
    assert jax.tree.leaves(decay_mask(boxed)) == expected
    # Sanity of the reference itself: kernels/embeddings decayed, LayerNorm and biases not.
    by_name = dict(zip([n for n, _ in names_and_leaves(plain)], expected, strict=True))
    assert by_name["bert/embeddings/word_embeddings/embedding"]
    assert by_name["bert/layer_0/intermediate/kernel"]
    assert not by_name["bert/layer_0/attention_layer_norm/scale"]
    assert not by_name["mlm_head/output_bias"]
    assert not by_name["nsp_head/bias"]


def test_decay_mask_rejects_unnamed_trees():
    with pytest.raises(ValueError, match="nested dicts"):
        decay_mask([jnp.zeros(2)])


def test_boxed_params_give_same_updates_and_partitioned_state():
    params = small_params()
    names = {2: ("vocab", "embed"), 3: ("embed", "heads", "kv")}
    boxed = jax.tree.map(
        lambda p: nn.LogicallyPartitioned(p, names.get(p.ndim, ("embed",) * p.ndim)), params
    )
    grads = random_grads(params, 2)
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
    for name in ("adamw", "bert_adam", "lamb"):
        tx = make_optimizer(name, make_schedule("bert", PEAK, TOTAL, WARMUP), weight_decay=WD)
        plain_history = run_optax(tx, params, grads)
        boxed_grads = [
            jax.tree.map(lambda b, g: b.replace_boxed(g), boxed, gr, is_leaf=is_box) for gr in grads
        ]
        boxed_history = run_optax(tx, boxed, boxed_grads)
        for a, b in zip(plain_history, boxed_history, strict=True):
            jax.tree.map(np.testing.assert_array_equal, a, nn.unbox(b))
        # The moments carry the params' logical names, so state shardings derive from params.
        specs = nn.get_partition_spec(jax.eval_shape(tx.init, boxed))
        mu = [s for s in jax.tree.leaves(specs) if s != jax.sharding.PartitionSpec()]
        assert jax.sharding.PartitionSpec("vocab", "embed") in mu, name


# ------------------------------------------------------------------ optimizers vs references


def test_bert_adam_matches_torch_port_of_original():
    params = small_params()
    grads_list = random_grads(params, STEPS)
    tx = make_optimizer("bert_adam", make_schedule("bert", PEAK, TOTAL, WARMUP), weight_decay=WD)
    history = run_optax(tx, params, grads_list)

    # google-research/bert AdamWeightDecayOptimizer.apply_gradients, in torch float64.
    named = names_and_leaves(params)
    ps = [torch.tensor(np.asarray(p), dtype=torch.float64) for _, p in named]
    groups = [
        dict(
            params=[p for (n, _), p in zip(named, ps, strict=True) if excluded(n)], weight_decay=0.0
        )
        for excluded in (original_excluded, lambda n: not original_excluded(n))
    ]
    groups[1]["weight_decay"] = WD
    opt = AdamWeightDecay(groups, lr=PEAK, weight_decay=WD)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: original_lr(t) / PEAK)
    torch_history = []
    for grads in grads_list:
        gs = [torch.tensor(np.asarray(g), dtype=torch.float64) for _, g in names_and_leaves(grads)]
        for p, g in zip(ps, gs, strict=True):
            p.grad = g
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        opt.step()
        sched.step()
        torch_history.append([p.numpy().copy() for p in ps])
    assert_close_to_torch(history, torch_history)


def test_adamw_matches_torch_adamw():
    params = small_params()
    grads_list = random_grads(params, STEPS)
    tx = make_optimizer("adamw", make_schedule("bert", PEAK, TOTAL, WARMUP), weight_decay=WD)
    history = run_optax(tx, params, grads_list)

    named = names_and_leaves(params)
    ps = [torch.nn.Parameter(torch.tensor(np.asarray(p), dtype=torch.float64)) for _, p in named]
    decay = [p for (n, _), p in zip(named, ps, strict=True) if not original_excluded(n)]
    no_decay = [p for (n, _), p in zip(named, ps, strict=True) if original_excluded(n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: original_lr(t) / PEAK)
    torch_history = []
    for grads in grads_list:
        for p, (_, g) in zip(ps, names_and_leaves(grads), strict=True):
            p.grad = torch.tensor(np.asarray(g), dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        opt.step()
        sched.step()
        torch_history.append([p.detach().numpy().copy() for p in ps])
    assert_close_to_torch(history, torch_history)


def numpy_lamb(params, grads_list, lrs, wd, b1=0.9, b2=0.999, eps=1e-6, clip=1.0):
    """LAMB (You et al. 2020, Alg. 2) with bias correction; as in the authors' BERT code, weights
    excluded from decay also skip layer adaptation. float64."""
    named = names_and_leaves(params)
    ps = [np.asarray(p, np.float64) for _, p in named]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    history = []
    for t, grads in enumerate(grads_list, start=1):
        gs = [np.asarray(g, np.float64) for _, g in names_and_leaves(grads)]
        norm = np.sqrt(sum((g**2).sum() for g in gs))
        gs = [g * clip / max(norm, clip) for g in gs]  # tf.clip_by_global_norm
        for i, (name, _) in enumerate(named):
            ms[i] = b1 * ms[i] + (1 - b1) * gs[i]
            vs[i] = b2 * vs[i] + (1 - b2) * gs[i] ** 2
            r = (ms[i] / (1 - b1**t)) / (np.sqrt(vs[i] / (1 - b2**t)) + eps)
            ratio = 1.0
            if not original_excluded(name):
                r = r + wd * ps[i]
                w_norm, r_norm = np.linalg.norm(ps[i]), np.linalg.norm(r)
                ratio = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
            ps[i] = ps[i] - lrs[t - 1] * ratio * r
        history.append([p.copy() for p in ps])
    return history


def test_lamb_matches_numpy_reference():
    params = small_params()
    grads_list = random_grads(params, STEPS)
    tx = make_optimizer("lamb", make_schedule("bert", PEAK, TOTAL, WARMUP), weight_decay=WD)
    history = run_optax(tx, params, grads_list)
    lrs = [original_lr(t) for t in range(STEPS)]
    assert_close_to_torch(history, numpy_lamb(params, grads_list, lrs, WD))


def test_lamb_trust_ratio_sets_per_layer_step_size():
    # With constant lr and one step, each decayed layer moves by exactly lr * ||p||; excluded
    # layers move by lr * ||adam update|| (no trust ratio).
    params = small_params()
    grads = random_grads(params, 1)[0]
    tx = make_optimizer("lamb", 0.1, weight_decay=WD, clip_norm=None)
    (new,) = run_optax(tx, params, [grads])
    triples = zip(
        names_and_leaves(params), names_and_leaves(grads), jax.tree.leaves(new), strict=True
    )
    for (name, p), (_, g), q in triples:
        step = np.linalg.norm(np.asarray(q, np.float64) - np.asarray(p, np.float64))
        if original_excluded(name):
            # The first bias-corrected Adam step is g / (|g| + eps), about +-1 per element.
            g = np.asarray(g, np.float64)
            np.testing.assert_allclose(
                step, 0.1 * np.linalg.norm(g / (np.abs(g) + 1e-6)), rtol=1e-5
            )
        else:
            np.testing.assert_allclose(step, 0.1 * np.linalg.norm(p), rtol=1e-5, err_msg=name)


def test_clipping_is_global_norm_before_the_optimizer():
    # The first moment after one step is (1 - b1) * (the gradient the optimizer saw).
    params = small_params()
    grads = jax.tree.map(lambda p: 100.0 * jnp.ones_like(p), params)
    n = sum(p.size for p in jax.tree.leaves(params))
    for clip_norm, seen in [(None, 100.0), (1.0, 1.0 / np.sqrt(n)), (1e6, 100.0)]:
        tx = make_optimizer("bert_adam", 1.0, clip_norm=clip_norm)
        _, state = jax.jit(tx.update)(grads, tx.init(params), params)
        mu = optax.tree_utils.tree_get(state, "mu")
        np.testing.assert_allclose(jax.tree.leaves(mu)[0], 0.1 * seen, rtol=1e-5)


def test_make_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'sgd'.*adamw.*bert_adam.*lamb"):
        make_optimizer("sgd", 1e-3)
    with pytest.raises(ValueError, match="clip_norm"):
        make_optimizer("adamw", 1e-3, clip_norm=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer("lamb", 1e-3, weight_decay=-0.1)


# ------------------------------------------------------------------------------------ sharding


@pytest.mark.parametrize("name", ["adamw", "bert_adam", "lamb"])
def test_sharded_jitted_update_matches_single_device(name):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    params = small_params()
    grads = random_grads(params, 2)
    tx = make_optimizer(name, make_schedule("bert", PEAK, TOTAL, 1), weight_decay=WD)
    expected = run_optax(tx, params, grads)[-1]

    put = lambda tree: jax.device_put(tree, shard)  # every leaf's axis 0 is 8 or 16

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    sharded = put(params)
    state = jax.jit(tx.init)(sharded)
    for g in grads:
        sharded, state = step(sharded, state, put(g))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0), sharded, expected
    )
    assert all(
        leaf.sharding.is_equivalent_to(shard, leaf.ndim) for leaf in jax.tree.leaves(sharded)
    )
