"""Training machinery shared by pretraining and fine-tuning.

One batch's life: the input pipeline yields per-process numpy arrays; ``global_batch`` turns them
into one ``jax.Array`` per field sharded over the data axes; ``make_train_step`` compiles one step
that splits the batch into micro-batches, sums their gradients, clips, updates and returns the new
state and metrics without a host synchronisation.

Usage::

    state, shardings = create_train_state(model_init, tx, mesh, rules, seed=0)
    step = make_train_step(loss_fn, loss_denominators, tx, shardings, mesh, grad_accum_steps=1)
    state, metrics = step(state, batch)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from bert_jax.sharding import Rules, batch_sharding, logical_shardings, replicated, use_mesh

Batch = Mapping[str, jax.Array]
# loss_fn(params, batch, rng, denominators) -> (loss, metrics). Every term of the loss and of the
# metrics is a sum over the examples of `batch` divided by a denominator of the *whole* batch, so
# that micro-batch results add up to exactly the full-batch values.
LossFn = Callable[[Any, Batch, jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict]]
DenominatorsFn = Callable[[Batch], dict[str, jax.Array]]


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    step: jax.Array  # number of updates applied so far
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; the dropout key of update t is fold_in(rng, t)

    def replace(self, **changes) -> TrainState:
        return dataclasses.replace(self, **changes)


def create_train_state(
    init_params: Callable[[jax.Array], Any],
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Rules,
    seed: int,
) -> tuple[TrainState, TrainState]:
    """Creates the train state already sharded over ``mesh``; returns it and its shardings.

    ``init_params(rng)`` returns boxed (logically partitioned) parameters. The state's structure
    comes from ``jax.eval_shape``; shardings from the logical names; ``jax.jit`` then materialises
    every array in place, so nothing large is ever built on one device.
    """

    def init(rng):
        params_rng, dropout_rng = jax.random.split(rng)
        params = init_params(params_rng)
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), dropout_rng)

    rng = jax.random.PRNGKey(seed)
    abstract = jax.eval_shape(init, rng)
    shardings = logical_shardings(abstract, mesh, rules)
    state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
    return state, shardings


def abstract_state(state_shardings: TrainState, state: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying the target shardings: what a checkpoint restores into."""
    return jax.tree.map(
        lambda s, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_shardings, state
    )


def _split_micro_batches(batch: Batch, n: int) -> Batch:
    def split(x):
        if x.shape[0] % n:
            raise ValueError(
                f"batch of {x.shape[0]} rows does not split into grad_accum_steps={n} micro-batches"
            )
        # Row i goes to micro-batch i % n, so each micro-batch stays spread over all devices.
        return x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1)

    return jax.tree.map(split, batch)


def make_train_step(
    loss_fn: LossFn,
    denominators_fn: DenominatorsFn,
    tx: optax.GradientTransformation,
    state_shardings: TrainState,
    mesh: Mesh,
    rules: Rules,
    grad_accum_steps: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """One compiled update: gradients (accumulated over micro-batches), optimizer, metrics.

    The state is donated: its buffers are reused for the new state. Metrics stay on the device
    until the caller reads them.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: Batch):
        rng = jax.random.fold_in(state.rng, state.step)
        denominators = denominators_fn(batch)
        if grad_accum_steps == 1:
            (loss, metrics), grads = grad_fn(state.params, batch, rng, denominators)
        else:

            def accumulate(carry, inputs):
                micro_batch, i = inputs
                (loss, metrics), grads = grad_fn(
                    state.params, micro_batch, jax.random.fold_in(rng, i), denominators
                )
                return jax.tree.map(jnp.add, carry, (loss, metrics, grads)), None

            micro_batches = _split_micro_batches(batch, grad_accum_steps)
            zeros = jax.eval_shape(
                grad_fn,
                state.params,
                jax.tree.map(lambda x: x[0], micro_batches),
                rng,
                denominators,
            )
            zeros = jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), (zeros[0][0], zeros[0][1], zeros[1])
            )
            (loss, metrics, grads), _ = jax.lax.scan(
                accumulate, zeros, (micro_batches, jnp.arange(grad_accum_steps))
            )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    jitted = jax.jit(
        step,
        in_shardings=(state_shardings, batch_sharding(mesh)),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=0,
    )

    def run(state, batch):
        with use_mesh(mesh, rules):
            return jitted(state, batch)

    return run


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's rows into global arrays split over the data axes."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


@jax.jit
def all_finite(tree) -> jax.Array:
    """1.0 when every parameter is finite, else NaN (so that check_finite reports it)."""
    finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))
    return jnp.where(finite, 1.0, jnp.nan)


def check_finite(metrics: Mapping[str, float], step: int) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(
            f"Non-finite training metrics at step {step}: {bad}. Stopping without saving; the last "
            "checkpoint is from before. Lower the learning rate or check the data, then re-run."
        )


class Preemption:
    """Turns SIGTERM into a flag the loop checks, so that it can save before exiting.

    Single process only: with several, processes could see the signal at different steps and
    part ways; there JAX's own preemption notice, which orbax's ``reached_preemption`` reads at
    the same step on every process, decides instead.
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping.")
        self.requested = True

    def close(self) -> None:
        """Gives SIGTERM back to the handler it had, so that the process stops on it again once
        the loop is over (a benchmark or notebook goes on after a run)."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def mean_metrics(step_metrics: list[Mapping[str, jax.Array]]) -> dict[str, float]:
    """Averages the metrics of the steps since the last log; the one host sync of a log step."""
    fetched = jax.device_get(step_metrics)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def check_batch_size(name: str, size: int, mesh: Mesh, grad_accum_steps: int = 1) -> None:
    """Fails before any work when a global batch cannot be split evenly.

    Each process feeds size / processes rows, each data-parallel device (data x fsdp) an equal
    part of every micro-batch.
    """
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    for parts, what in (
        (jax.process_count(), "processes"),
        (shards * grad_accum_steps, "data-parallel devices (data x fsdp) x grad_accum_steps"),
    ):
        if size % parts:
            raise ValueError(
                f"{name}={size} does not split over the {parts} {what}; use a multiple of {parts}."
            )
