"""Device mesh and the mapping from logical axis names to mesh axes.

The model names its axes (``bert_jax.models``); the config's ``sharding_rules`` maps each name to
mesh axes ``data``, ``fsdp`` and ``tensor``. Changing the parallelism of an experiment is a config
change: ``--config.mesh_shape=(1,-1,1)`` is pure FSDP, ``(-1,1,2)`` data x 2-way tensor parallel.

Usage::

    mesh = make_mesh((-1, 1, 1))
    with use_mesh(mesh, rules):
        state_sharding = logical_shardings(abstract_state, mesh, rules)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axes. Parameters: shard the hidden ("embed") dimension over fsdp (ZeRO-3
# style) and the heads (heads * head_dim) / mlp / vocab dimensions over tensor (Megatron style).
# Activations: batch over data and fsdp, the tensor-parallel dimensions over tensor.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("norm", None),
    ("layers", None),  # the stacked-layer axis of scan_layers
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
)

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Fills the one ``-1`` entry of ``mesh_shape`` so that the product is ``num_devices``.

    >>> resolve_mesh_shape((-1, 2, 1), 8)
    (4, 2, 1)
    """
    shape = list(mesh_shape)
    if len(shape) != len(MESH_AXES):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} needs one entry per axis {MESH_AXES}.")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} may contain at most one -1.")
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(
                f"mesh_shape {tuple(mesh_shape)} does not divide the {num_devices} devices."
            )
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(
            f"mesh_shape {tuple(shape)} uses {math.prod(shape)} devices but {num_devices} are "
            "available; use -1 in one axis to fill the rest."
        )
    return tuple(shape)


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp, tensor)`` mesh over all (or the given) devices, ``-1`` filled in."""
    devices = jax.devices() if devices is None else list(devices)
    shape = resolve_mesh_shape(mesh_shape, len(devices))
    if devices == jax.devices():
        # Auto axis types: linen's logical partitioning (and nn.Embed) need them.
        return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules) -> Iterator[None]:
    """Makes ``mesh`` and the logical ``rules`` active for tracing and running model code."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
        yield


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for a (boxed) pytree from its logical axis names; unnamed leaves replicate."""
    specs = nn.get_partition_spec(abstract_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, tuple(rules))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split on their leading dimension over the data-parallel axes."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
