"""Import and export of BERT checkpoints: Hugging Face (PyTorch) and the original TF1 release.

Every parameter of the bert_jax tree is described once, in ``_param_table``: its path in the
bert_jax tree, its Hugging Face key, its original TensorFlow name and its layout. ``load_hf``,
``save_hf`` and ``load_tf`` all read that one table.

Usage::

    from bert_jax import interop
    from bert_jax.models.heads import BertForPreTraining

    cfg, params = interop.load_hf("path/to/bert-base-uncased")  # config.json + model.safetensors
    out = BertForPreTraining(cfg).apply({"params": params}, input_ids, deterministic=True)
    interop.save_hf(cfg, params, "exported/")  # loads with transformers.BertForPreTraining
    cfg, params = interop.load_tf("uncased_L-12_H-768_A-12/bert_model.ckpt",
                                  "uncased_L-12_H-768_A-12/bert_config.json")

Layouts: bert_jax kernels are ``[in, out]`` (attention kernels may split the heads out, e.g.
query ``[hidden, heads, head_dim]``, output ``[heads, head_dim, hidden]``: the model's own shapes
decide); Hugging Face stores ``nn.Linear`` weights ``[out, in]``; TF stores kernels ``[in, out]``
except the NSP and GLUE classifier ``output_weights``, which are ``[out, in]``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bert_jax.models.bert import BertConfig, to_layer_layout
from bert_jax.models.heads import BertForPreTraining

Path_ = tuple[str, ...]
_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Param:
    path: Path_  # in the bert_jax tree
    hf: str  # key in a Hugging Face BertForPreTraining state dict
    tf: str  # variable name in an original google-research/bert checkpoint
    kernel: bool = False  # a dense kernel: Hugging Face stores it [out, in]
    tf_out_in: bool = False  # TF stores this kernel [out, in] too (NSP and GLUE classifier)
    # The attention output kernel's inputs are all its dims but the last (the joined heads, if
    # bert_jax splits them out); every other kernel's input is its first dim.
    joins_heads: bool = False

    @property
    def group(self) -> str:
        return _group_of(self.path)


def _group_of(path: Path_) -> str:
    """ "encoder" (always required), or the optional part: pooler, a head, the classifier."""
    if path[0] == "bert":
        return "pooler" if path[1] == "pooler" else "encoder"
    return path[0]


def _dense(path: Path_, hf: str, tf: str, **kw: Any) -> list[_Param]:
    return [
        _Param((*path, "kernel"), f"{hf}.weight", f"{tf}/kernel", kernel=True, **kw),
        _Param((*path, "bias"), f"{hf}.bias", f"{tf}/bias"),
    ]


def _norm(path: Path_, hf: str, tf: str) -> list[_Param]:
    return [
        _Param((*path, "scale"), f"{hf}.weight", f"{tf}/gamma"),
        _Param((*path, "bias"), f"{hf}.bias", f"{tf}/beta"),
    ]


def _param_table(num_layers: int) -> list[_Param]:
    """Every parameter bert_jax's BertForPreTraining, a classifier or a span head can hold."""
    emb = ("bert", "embeddings")
    table = [
        _Param(
            (*emb, name, "embedding"), f"bert.embeddings.{name}.weight", f"bert/embeddings/{name}"
        )
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    ]
    table += _norm((*emb, "layer_norm"), "bert.embeddings.LayerNorm", "bert/embeddings/LayerNorm")
    for i in range(num_layers):
        jx, hf, tf = ("bert", f"layer_{i}"), f"bert.encoder.layer.{i}", f"bert/encoder/layer_{i}"
        for qkv in ("query", "key", "value"):
            table += _dense(
                (*jx, "attention", qkv), f"{hf}.attention.self.{qkv}", f"{tf}/attention/self/{qkv}"
            )
        table += _dense(
            (*jx, "attention", "output"),
            f"{hf}.attention.output.dense",
            f"{tf}/attention/output/dense",
            joins_heads=True,
        )
        table += _norm(
            (*jx, "attention_layer_norm"),
            f"{hf}.attention.output.LayerNorm",
            f"{tf}/attention/output/LayerNorm",
        )
        table += _dense(
            (*jx, "intermediate"), f"{hf}.intermediate.dense", f"{tf}/intermediate/dense"
        )
        table += _dense((*jx, "output"), f"{hf}.output.dense", f"{tf}/output/dense")
        table += _norm(
            (*jx, "output_layer_norm"), f"{hf}.output.LayerNorm", f"{tf}/output/LayerNorm"
        )
    table += _dense(("bert", "pooler"), "bert.pooler.dense", "bert/pooler/dense")
    table += _dense(
        ("mlm_head", "dense"), "cls.predictions.transform.dense", "cls/predictions/transform/dense"
    )
    table += _norm(
        ("mlm_head", "layer_norm"),
        "cls.predictions.transform.LayerNorm",
        "cls/predictions/transform/LayerNorm",
    )
    table.append(
        _Param(("mlm_head", "output_bias"), "cls.predictions.bias", "cls/predictions/output_bias")
    )
    table += [
        _Param(
            ("nsp_head", "kernel"),
            "cls.seq_relationship.weight",
            "cls/seq_relationship/output_weights",
            kernel=True,
            tf_out_in=True,
        ),
        _Param(
            ("nsp_head", "bias"), "cls.seq_relationship.bias", "cls/seq_relationship/output_bias"
        ),
        _Param(
            ("classifier", "kernel"),
            "classifier.weight",
            "output_weights",
            kernel=True,
            tf_out_in=True,
        ),
        _Param(("classifier", "bias"), "classifier.bias", "output_bias"),
        # The span head of BertForQuestionAnswering / the original run_squad.py.
        _Param(
            ("qa_outputs", "kernel"),
            "qa_outputs.weight",
            "cls/squad/output_weights",
            kernel=True,
            tf_out_in=True,
        ),
        _Param(("qa_outputs", "bias"), "qa_outputs.bias", "cls/squad/output_bias"),
    ]
    return table


# The groups bert_jax initialises afresh when a checkpoint lacks them (BertModel, BertForMaskedLM
# and fine-tuned checkpoints carry only some heads); "classifier" and "qa_outputs" are kept only
# when present.
_OPTIONAL = ("pooler", "mlm_head", "nsp_head")

# ------------------------------------------------------------------------------------- configs

_HF_ACT = {
    "gelu": "gelu",  # exact (erf)
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}
_HF_ACT_OUT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
# google-research/bert's modeling.py implements "gelu" with the tanh approximation.
_TF_ACT = {"gelu": "gelu_tanh", "relu": "relu"}

# bert_jax field <- field of config.json / bert_config.json (both use the same names).
_CONFIG_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "initializer_range": "initializer_range",
}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected the {what}.")
    with path.open() as f:
        return json.load(f)


def _config_from_json(d: Mapping[str, Any], acts: Mapping[str, str], source: Path) -> BertConfig:
    act = d.get("hidden_act", "gelu")
    if act not in acts:
        raise ValueError(
            f"{source}: hidden_act {act!r} is not supported; bert_jax has {sorted(acts)}."
        )
    missing = [v for v in _CONFIG_FIELDS.values() if v not in d]
    if missing:
        raise ValueError(f"{source} lacks the BERT config fields {missing}.")
    fields = {k: d[v] for k, v in _CONFIG_FIELDS.items()}
    # The original TF code's LayerNorm used epsilon 1e-12, which is also Hugging Face's default.
    return BertConfig(**fields, hidden_act=acts[act], layer_norm_eps=d.get("layer_norm_eps", 1e-12))


def _hf_config(path: Path) -> BertConfig:
    d = _read_json(path / "config.json", "Hugging Face config.json")
    if d.get("model_type") != "bert":
        raise ValueError(
            f"{path / 'config.json'} has model_type={d.get('model_type')!r}; only 'bert' "
            "checkpoints can be loaded (RoBERTa, ALBERT, ... differ in architecture or names)."
        )
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"{path}: position_embedding_type={d['position_embedding_type']!r}; bert_jax "
            "implements 'absolute' position embeddings only."
        )
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise ValueError(f"{path}: decoder / cross-attention BERT models are not supported.")
    return _config_from_json(d, _HF_ACT, path / "config.json")


# ------------------------------------------------------------------------------------- layouts


def _expected_shapes(cfg: BertConfig) -> dict[Path_, tuple[int, ...]]:
    abstract = jax.eval_shape(
        lambda: BertForPreTraining(cfg).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    )
    flat = traverse_util.flatten_dict(nn.unbox(abstract["params"]))
    span_head = {("qa_outputs", "kernel"): (cfg.hidden_size, 2), ("qa_outputs", "bias"): (2,)}
    return {k: tuple(v.shape) for k, v in flat.items()} | span_head


def _stored_shape(p: _Param, shape: tuple[int, ...], out_in: bool) -> tuple[int, ...]:
    """The shape a checkpoint stores for a bert_jax array of ``shape``."""
    if p.kernel:
        n_in = math.prod(shape[:-1]) if p.joins_heads else shape[0]
        in_out = (n_in, math.prod(shape) // n_in)
        return in_out[::-1] if out_in else in_out
    return shape if p.path[-1] == "embedding" else (math.prod(shape),)


def _import(
    p: _Param, x: np.ndarray, shape: tuple[int, ...], out_in: bool, name: str
) -> np.ndarray:
    want = _stored_shape(p, shape, out_in)
    if tuple(x.shape) != want:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; the config implies {want}.")
    x = np.asarray(x, np.float32)
    return (x.T if p.kernel and out_in else x).reshape(shape)


def _export_hf(p: _Param, x: np.ndarray) -> np.ndarray:
    if p.kernel:
        return np.ascontiguousarray(x.reshape(_stored_shape(p, x.shape, out_in=False)).T)
    return x if p.path[-1] == "embedding" else x.reshape(-1)


def _assemble(
    cfg: BertConfig,
    tensors: Mapping[str, np.ndarray],
    name_of: Callable[[_Param], str],
    out_in: Callable[[_Param], bool],
    source: str,
    seed: int,
) -> dict[str, Any]:
    """Builds the bert_jax tree from ``tensors`` (checkpoint name -> array), checking every name."""
    table = _param_table(cfg.num_layers)
    shapes = _expected_shapes(cfg)
    known = {name_of(p) for p in table}
    unexpected = sorted(set(tensors) - known)
    if unexpected:
        raise ValueError(
            f"{source}: unexpected variables {unexpected}; bert_jax has no place for them."
        )
    missing = sorted(
        name_of(p) for p in table if p.group == "encoder" and name_of(p) not in tensors
    )
    if missing:
        raise ValueError(f"{source}: missing encoder variables {missing}.")

    flat: dict[Path_, np.ndarray] = {}
    absent: set[str] = set()
    for p in table:
        name = name_of(p)
        if name not in tensors:
            absent.add(p.group)
            continue
        x = tensors[name]
        if p.path == ("classifier", "kernel"):  # its width is the checkpoint's number of labels
            shapes[p.path] = (cfg.hidden_size, x.shape[0])
        elif p.path == ("classifier", "bias"):
            shapes[p.path] = tuple(x.shape)
        flat[p.path] = _import(p, x, shapes[p.path], out_in(p), name)
    partial = {p.group for p in table if p.path in flat} & absent
    if partial:
        raise ValueError(f"{source}: only some variables of {sorted(partial)} are present.")

    fresh = [g for g in _OPTIONAL if g in absent]
    if fresh:
        _log.warning(
            "%s has no %s; initialising them afresh (normal(%g) kernels, zero biases).",
            source,
            " / ".join(fresh),
            cfg.initializer_range,
        )
        flat |= _fresh(cfg, fresh, seed)
    return traverse_util.unflatten_dict(flat)


def _fresh(cfg: BertConfig, groups: Iterable[str], seed: int) -> dict[Path_, np.ndarray]:
    """The model's own initialisation of ``groups``; jit prunes the rest of the computation."""
    groups = tuple(groups)

    @jax.jit
    def init(key):
        variables = BertForPreTraining(cfg).init(key, jnp.zeros((1, 1), jnp.int32))
        flat = traverse_util.flatten_dict(nn.unbox(variables["params"]))
        return {"/".join(k): v for k, v in flat.items() if _group_of(k) in groups}

    return {tuple(k.split("/")): np.asarray(v) for k, v in init(jax.random.key(seed)).items()}


# ---------------------------------------------------------------------------------- Hugging Face


def _read_hf_tensors(path: Path) -> dict[str, np.ndarray]:
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file() or index.is_file():
        from safetensors import safe_open

        files = (
            [single]
            if single.is_file()
            else sorted({path / f for f in _read_json(index, "index")["weight_map"].values()})
        )
        tensors = {}
        for file in files:
            # framework="flax" (jax) reads bfloat16 too, which numpy's loader rejects.
            with safe_open(file, framework="flax") as f:
                tensors |= {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}  # noqa: SIM118
        return tensors
    if (path / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    raise FileNotFoundError(
        f"{path} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin."
    )


def _normalise_hf_keys(tensors: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Renames a checkpoint's keys to BertForPreTraining's and drops the tied copies."""
    out = {}
    bare = not any(k.startswith("bert.") for k in tensors)  # a BertModel checkpoint
    for k, v in tensors.items():
        # Checkpoints written before transformers 4.x name LayerNorm parameters gamma / beta.
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        if bare and k.split(".")[0] in ("embeddings", "encoder", "pooler"):
            k = "bert." + k
        out[k] = v
    out.pop("bert.embeddings.position_ids", None)  # a buffer (arange), saved by older versions
    # The MLM decoder is tied to the word embeddings and its bias to cls.predictions.bias;
    # bert_jax ties them by construction, so any stored copy must agree.
    tied = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }
    for copy, original in tied.items():
        if copy not in out:
            continue
        value = out.pop(copy)
        out.setdefault(original, value)
        if not np.array_equal(out[original], value):
            raise ValueError(
                f"{source}: {copy} differs from {original}; bert_jax ties them, so an untied "
                "decoder cannot be represented."
            )
    return out


def load_hf(path: str | os.PathLike, *, seed: int = 0) -> tuple[BertConfig, dict[str, Any]]:
    """Loads a Hugging Face BERT directory (config.json + model.safetensors or pytorch_model.bin).

    BertModel, BertForPreTraining, BertForMaskedLM, BertForSequenceClassification and
    BertForQuestionAnswering checkpoints are accepted. Returns the config and a float32
    BertForPreTraining parameter tree, plus ``"classifier"`` or ``"qa_outputs"`` when the
    checkpoint has one; the pooler / MLM / NSP heads a checkpoint lacks are initialised afresh
    from ``seed`` (and named in one warning).

    >>> cfg, params = load_hf("bert-base-uncased/")  # doctest: +SKIP
    >>> params["bert"]["layer_0"]["attention"]["query"]["kernel"].shape  # doctest: +SKIP
    (768, 12, 64)
    """
    path = Path(path)
    cfg = _hf_config(path)
    tensors = _normalise_hf_keys(_read_hf_tensors(path), str(path))
    return cfg, _assemble(cfg, tensors, lambda p: p.hf, lambda p: p.kernel, str(path), seed)


def hf_config_fields(model_config: BertConfig) -> dict[str, Any]:
    """The model's Hugging Face ``config.json`` fields (architecture only).

    >>> transformers.BertConfig(**hf_config_fields(BertConfig.from_name("base")))  # doctest: +SKIP
    """
    return {
        "model_type": "bert",
        **{hf: getattr(model_config, ours) for ours, hf in _CONFIG_FIELDS.items()},
        "hidden_act": _HF_ACT_OUT[model_config.hidden_act],
        "layer_norm_eps": model_config.layer_norm_eps,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
    }


def save_hf(
    model_config: BertConfig,
    params: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> None:
    """Writes ``params`` as a Hugging Face checkpoint: model.safetensors (float32) + config.json.

    A BertForPreTraining tree loads with ``transformers.BertForPreTraining.from_pretrained(path)``;
    a tree with ``"classifier"`` and no MLM head is written as a BertForSequenceClassification,
    one with ``"qa_outputs"`` (the span head) as a BertForQuestionAnswering (without the pooler,
    which that class does not have).

    >>> save_hf(cfg, params, "exported/")  # doctest: +SKIP
    >>> transformers.BertForPreTraining.from_pretrained("exported/")  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to replace it.")
    params = to_layer_layout(nn.unbox(dict(params)), scan_layers=False)
    flat = traverse_util.flatten_dict(jax.device_get(params))
    if "qa_outputs" in params:  # BertForQuestionAnswering has no pooler; ours is unused there
        flat = {k: v for k, v in flat.items() if _group_of(k) != "pooler"}
    table = [p for p in _param_table(model_config.num_layers) if p.path in flat]
    unexpected = sorted("/".join(k) for k in set(flat) - {p.path for p in table})
    if unexpected:
        raise ValueError(f"params has entries with no Hugging Face name: {unexpected}.")
    missing = [
        "/".join(p.path)
        for p in _param_table(model_config.num_layers)
        if p.group == "encoder" and p.path not in flat
    ]
    if missing:
        raise ValueError(f"params lacks encoder entries {missing}.")
    tensors = {p.hf: _export_hf(p, np.asarray(flat[p.path], np.float32)) for p in table}

    has = {p.group for p in table}
    architecture = "BertForPreTraining"
    if "mlm_head" not in has and "classifier" in has:
        architecture = "BertForSequenceClassification"
    elif "mlm_head" not in has and "qa_outputs" in has:
        architecture = "BertForQuestionAnswering"
    config = {
        "architectures": [architecture],
        **hf_config_fields(model_config),
        "torch_dtype": "float32",
    }
    if "classifier" in has:
        config["num_labels"] = int(flat["classifier", "bias"].shape[0])
    path.mkdir(parents=True, exist_ok=True)
    # transformers refuses safetensors files without format metadata.
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with (path / "config.json").open("w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


# ------------------------------------------------------------------------------------ original TF

# Optimizer slots and counters in google-research/bert checkpoints, which carry no weights.
_TF_SKIP_SUFFIXES = ("/adam_m", "/adam_v")
_TF_SKIP = {"global_step"}


def load_tf(
    checkpoint_prefix: str | os.PathLike, bert_config_file: str | os.PathLike, *, seed: int = 0
) -> tuple[BertConfig, dict[str, Any]]:
    """Loads an original google-research/bert TF1 checkpoint (``bert_model.ckpt`` prefix).

    Adam slots and ``global_step`` are skipped; a GLUE classifier (top-level ``output_weights`` /
    ``output_bias``) becomes ``params["classifier"]``. The original code's ``"gelu"`` is the tanh
    approximation, so it maps to ``hidden_act="gelu_tanh"``. Needs TensorFlow (``bert_jax[tf]``).

    >>> cfg, params = load_tf("uncased_L-2_H-128_A-2/bert_model.ckpt",
    ...                       "uncased_L-2_H-128_A-2/bert_config.json")  # doctest: +SKIP
    """
    try:
        import tensorflow as tf  # costs seconds, so only here
    except ImportError as e:
        raise ImportError("load_tf needs TensorFlow: pip install 'bert_jax[tf]'.") from e

    config_path = Path(bert_config_file)
    cfg = _config_from_json(_read_json(config_path, "bert_config.json"), _TF_ACT, config_path)
    prefix = str(checkpoint_prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError) as e:
        raise FileNotFoundError(
            f"No TF checkpoint at prefix {prefix} (expected {prefix}.index and "
            f"{prefix}.data-*): {e}"
        ) from e
    tensors = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name not in _TF_SKIP and not name.endswith(_TF_SKIP_SUFFIXES)
    }
    return cfg, _assemble(cfg, tensors, lambda p: p.tf, lambda p: p.tf_out_in, prefix, seed)
