"""Optimizers (``adamw``, ``bert_adam``, ``lamb``), learning-rate schedules, the weight-decay mask.

Conventions follow the original google-research/bert code unless a name says otherwise:

* gradients are clipped to global norm ``clip_norm`` (1.0) *before* the optimizer sees them;
* weight decay is decoupled (added to the update, not to the loss) and skipped for every bias and
  every LayerNorm parameter (see :func:`decay_mask`);
* a schedule is indexed by the number of updates already applied: the update that turns step ``t``
  into ``t + 1`` uses ``schedule(t)``. This is the original's convention (``global_step`` is read
  before ``apply_gradients`` increments it), optax's (``scale_by_schedule`` reads its count before
  incrementing) and torch's ``LambdaLR`` (the first ``optimizer.step()`` uses ``lr_lambda(0)``).
  With warmup the very first update therefore has learning rate 0 (it only fills the moments).

Usage::

    schedule = make_schedule("bert", peak_lr=1e-4, total_steps=1_000_000, warmup_steps=10_000)
    tx = make_optimizer("bert_adam", schedule, weight_decay=0.01)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("bert", "polynomial", "constant")
OPTIMIZERS = ("adamw", "bert_adam", "lamb")

# Leaf names that are never decayed: LayerNorm "scale" and "bias", every Dense "bias", and the MLM
# head's "output_bias". This is the original's rule (regex "LayerNorm|layer_norm|bias" on the
# variable name) expressed on flax leaf names: a LayerNorm has no parameter other than scale/bias.
_NO_DECAY_LEAVES = frozenset({"scale", "bias", "output_bias"})

# Default eps per optimizer: torch.optim.AdamW / optax.adamw / transformers use 1e-8; the original
# AdamWeightDecay and the LAMB reference implementations use 1e-6.
_DEFAULT_EPS = {"adamw": 1e-8, "bert_adam": 1e-6, "lamb": 1e-6}


def make_schedule(
    kind: str,
    peak_lr: float,
    total_steps: int,
    warmup_steps: int,
    end_lr: float = 0.0,
    power: float = 1.0,
) -> optax.Schedule:
    """A learning-rate schedule ``step -> lr``, jit-safe (no Python branching on the step).

    With ``t`` the number of updates already applied and ``W = warmup_steps``, ``T = total_steps``,
    for ``t < W`` every kind returns ``peak_lr * t / W``; afterwards:

    * ``"bert"`` (google-research/bert ``create_optimizer``): polynomial decay measured from step 0,
      ``end_lr + (peak_lr - end_lr) * (1 - min(t, T) / T) ** power``. Warmup *replaces* the start of
      the decay rather than shifting it, so at ``t = W`` the rate is already below ``peak_lr``.
    * ``"polynomial"`` (transformers' ``get_polynomial_decay_schedule_with_warmup``; with power 1
      and end_lr 0 ``get_linear_schedule_with_warmup``): the decay starts at ``W`` and lasts
      ``T - W`` steps, ``end_lr + (peak_lr - end_lr) * (1 - (min(t, T) - W) / (T - W)) ** power``.
    * ``"constant"``: ``peak_lr``.

    >>> s = make_schedule("bert", peak_lr=1.0, total_steps=10, warmup_steps=4)
    >>> [round(float(s(t)), 2) for t in (0, 2, 4, 5, 10, 20)]
    [0.0, 0.5, 0.6, 0.5, 0.0, 0.0]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown schedule kind {kind!r}; choose one of {list(SCHEDULES)}.")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must lie in [0, total_steps={total_steps}].")
    if kind == "polynomial" and warmup_steps == total_steps:
        raise ValueError(
            f'kind="polynomial" decays over total_steps - warmup_steps steps, which is 0 here; '
            f"lower warmup_steps={warmup_steps} below total_steps={total_steps} or use "
            f'kind="constant".'
        )
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}.")

    if kind == "bert":
        after_warmup = optax.polynomial_schedule(peak_lr, end_lr, power, total_steps)
    elif kind == "polynomial":
        after_warmup = optax.polynomial_schedule(
            peak_lr, end_lr, power, total_steps - warmup_steps, transition_begin=warmup_steps
        )
    else:
        after_warmup = optax.constant_schedule(peak_lr)
    if warmup_steps == 0:
        return after_warmup

    def schedule(step):
        # float32 like the original (which casts global_step to tf.float32).
        step = jnp.asarray(step, jnp.float32)
        warmup = peak_lr * step / warmup_steps
        return jnp.where(step < warmup_steps, warmup, after_warmup(step))

    return schedule


def decay_mask(params: Any) -> Any:
    """Which parameters get weight decay: a pytree of bools (a prefix of ``params``).

    The rule is by leaf name: ``scale``, ``bias`` and ``output_bias`` (all LayerNorm parameters and
    every bias) are False; everything else (``kernel``, ``embedding``) is True. It reads only the
    tree's paths, so it works on arrays, ``jax.ShapeDtypeStruct`` trees from ``jax.eval_shape``, and
    trees boxed in ``nn.LogicallyPartitioned`` (where the bool sits at the box, which optax's
    ``masked`` accepts as a tree prefix).

    >>> decay_mask({"dense": {"kernel": 0.0, "bias": 0.0}, "layer_norm": {"scale": 0.0}})
    {'dense': {'bias': False, 'kernel': True}, 'layer_norm': {'scale': False}}
    """

    def decayed(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        if not names:
            raise ValueError(
                f"decay_mask needs a tree of named parameters (nested dicts); got a leaf at path "
                f"{jax.tree_util.keystr(path)!r}. Pass a mask tree to make_optimizer(mask=...)."
            )
        return names[-1] not in _NO_DECAY_LEAVES

    return jax.tree_util.tree_map_with_path(
        decayed, params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata)
    )


class ScaleByAdamNoBiasCorrectionState(NamedTuple):
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adam_no_bias_correction(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6
) -> optax.GradientTransformation:
    """Adam's ``m / (sqrt(v) + eps)`` without bias correction, as in the original AdamWeightDecay.

    optax 0.2.8's ``scale_by_adam`` always bias-corrects, hence this transformation. Without bias
    correction update ``t`` is ``(1 - b1**t) / sqrt(1 - b2**t)`` times Adam's: about 3.2x at the
    first update, up to 6.5x near the tenth, approaching 1x only after thousands of updates; the
    original relies on warmup to keep these early updates small.

    >>> tx = scale_by_adam_no_bias_correction()
    >>> u, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    >>> round(float(u[0]), 3)  # 0.1 / (sqrt(0.001) + 1e-6)
    3.162
    """

    def init_fn(params):
        return ScaleByAdamNoBiasCorrectionState(
            mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
        return updates, ScaleByAdamNoBiasCorrectionState(mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(
    name: str,
    learning_rate: optax.Schedule | float,
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float | None = None,
    clip_norm: float | None = 1.0,
    mask: Callable[[Any], Any] | Any = decay_mask,
) -> optax.GradientTransformation:
    """An optax optimizer: global-norm clipping (unless ``clip_norm`` is None), then one of

    * ``"adamw"``: ``optax.adamw``; bias-corrected Adam, eps 1e-8 by default; decay added to the
      update before the learning rate, ``p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``. This is
      exactly ``torch.optim.AdamW`` (which does ``p *= 1 - lr * wd`` first, on the same pre-step
      ``p``), up to float rounding.
    * ``"bert_adam"``: the original AdamWeightDecay; Adam *without* bias correction, eps 1e-6,
      ``p -= lr * (m / (sqrt(v) + eps) + wd * p)``.
    * ``"lamb"``: bias-corrected Adam plus decay, then the layer-wise trust ratio
      ``||p|| / ||update||`` (1 where either norm is 0), eps 1e-6. As in the LAMB authors' BERT code
      and apex's FusedLAMB (``exclude_from_layer_adaptation`` defaults to the decay exclusions),
      parameters excluded from decay also skip the trust ratio; ``optax.lamb`` would apply it to
      every parameter.

    ``mask`` (a bool tree or a function of the params, default :func:`decay_mask`) selects the
    parameters that get weight decay. ``eps=None`` takes the per-optimizer default above.

    >>> tx = make_optimizer("adamw", make_schedule("polynomial", 2e-5, 1000, 100))
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    if clip_norm is not None and clip_norm <= 0:
        raise ValueError(f"clip_norm must be positive or None (no clipping), got {clip_norm}.")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"b1 and b2 must lie in [0, 1), got b1={b1}, b2={b2}.")
    if eps is None:
        eps = _DEFAULT_EPS[name]
    elif eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}.")

    if name == "adamw":
        tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
    elif name == "bert_adam":
        tx = optax.chain(
            scale_by_adam_no_bias_correction(b1=b1, b2=b2, eps=eps),
            optax.add_decayed_weights(weight_decay, mask),
            optax.scale_by_learning_rate(learning_rate),
        )
    else:
        tx = optax.chain(
            optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
            optax.add_decayed_weights(weight_decay, mask),
            optax.masked(optax.scale_by_trust_ratio(), mask),
            optax.scale_by_learning_rate(learning_rate),
        )
    if clip_norm is None:
        return tx
    return optax.chain(optax.clip_by_global_norm(clip_norm), tx)


def freeze(tx: optax.GradientTransformation, frozen: Sequence[str]) -> optax.GradientTransformation:
    """``tx`` for every top-level parameter group except those named in ``frozen``, which get
    zero updates: no gradient step, no weight decay, no optimizer state (no Adam moments), and
    no share of the clipping norm. With nothing frozen, ``tx`` itself.

    >>> tx = freeze(make_optimizer("adamw", 1e-3), ["bert"])  # train the head on a fixed encoder
    """
    frozen = tuple(frozen)
    if not frozen:
        return tx

    def labels(params):
        unknown = sorted(set(frozen) - set(params))
        if unknown:
            raise ValueError(
                f"Cannot freeze {unknown}: the parameters' top-level groups are {sorted(params)}."
            )
        return {k: "frozen" if k in frozen else "trained" for k in params}

    return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def from_config(
    config: Any, total_steps: int, warmup_steps: int
) -> tuple[optax.Schedule, optax.GradientTransformation]:
    """The schedule and optimizer an experiment config describes (``bert_jax.config_lib``)."""
    schedule = make_schedule(
        config.schedule,
        config.learning_rate,
        total_steps,
        warmup_steps,
        end_lr=config.end_learning_rate,
        power=config.schedule_power,
    )
    tx = make_optimizer(
        config.optimizer,
        schedule,
        weight_decay=config.weight_decay,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        clip_norm=config.clip_norm or None,
    )
    return schedule, tx
