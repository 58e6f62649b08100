"""Import and export of BERT checkpoints: Hugging Face (PyTorch) and the original TF1 release.

Every parameter of the bert_jax tree is described once, in ``_param_table``: its path in the
bert_jax tree, its Hugging Face key, its original TensorFlow name and its layout. ``load_hf``,
``save_hf`` and ``load_tf`` all read that one table.

Usage::

    from bert_jax import interop
    from bert_jax.models.heads import BertForPreTraining

    cfg, params = interop.load_hf("path/to/bert-base-uncased")  # any layout transformers writes
    tok = interop.load_hf_tokenizer("path/to/bert-base-uncased")  # tokenizer.json or vocab.txt
    pooling = interop.load_sentence_pooling("all-MiniLM-L6-v2/")  # sentence-transformers, or None
    out = BertForPreTraining(cfg).apply({"params": params}, input_ids, deterministic=True)
    interop.save_hf(cfg, params, "exported/", tokenizer=tok)  # AutoTokenizer + AutoModel* load it
    cfg, params = interop.load_tf("uncased_L-12_H-768_A-12/bert_model.ckpt",
                                  "uncased_L-12_H-768_A-12/bert_config.json")

Layouts: bert_jax kernels are ``[in, out]`` (attention kernels may split the heads out, e.g.
query ``[hidden, heads, head_dim]``, output ``[heads, head_dim, hidden]``: the model's own shapes
decide); Hugging Face stores ``nn.Linear`` weights ``[out, in]``; TF stores kernels ``[in, out]``
except the NSP and GLUE classifier ``output_weights``, which are ``[out, in]``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bert_jax import tokenizers
from bert_jax.models.bert import BertConfig, to_layer_layout
from bert_jax.models.heads import BertForPreTraining
from bert_jax.pretrained import Pooling

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
    if d.get("add_cross_attention"):
        raise ValueError(f"{path}: cross-attention BERT models are not supported.")
    cfg = _config_from_json(d, _HF_ACT, path / "config.json")
    # is_decoder: left-context-only attention (BertLMHeadModel), bert_jax's causal models.
    return dataclasses.replace(cfg, causal=bool(d.get("is_decoder")))


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
    """The model's own initialisation of ``groups``."""
    init = _fresh_init(cfg, tuple(groups))
    return {tuple(k.split("/")): np.asarray(v) for k, v in init(jax.random.key(seed)).items()}


@functools.cache
def _fresh_init(cfg: BertConfig, groups: tuple[str, ...]) -> Callable[[jax.Array], dict]:
    """The model's init, jitted so that only ``groups`` are computed (jit prunes the rest); kept,
    as compiling it takes seconds and a session may load several checkpoints of one shape."""

    @jax.jit
    def init(key):
        variables = BertForPreTraining(cfg).init(key, jnp.zeros((1, 1), jnp.int32))
        flat = traverse_util.flatten_dict(nn.unbox(variables["params"]))
        return {"/".join(k): v for k, v in flat.items() if _group_of(k) in groups}

    return init


# ---------------------------------------------------------------------------------- Hugging Face

# Where a Hugging Face directory keeps its weights, in the order they are looked for; an
# ".index.json" names the shards (its "weight_map": variable -> file).
_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _hf_weight_files(path: Path) -> list[Path]:
    for name in _HF_WEIGHTS:
        file = path / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return [file]
        weight_map = _read_json(file, "shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{file} has no 'weight_map' (variable -> shard file); fix the file.")
        shards = sorted({path / f for f in weight_map.values()})
        missing = [f.name for f in shards if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{file} names shards {missing} that are not in {path}; download every shard."
            )
        return shards
    raise FileNotFoundError(f"{path} has none of {list(_HF_WEIGHTS)}: no weights to load.")


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    # framework="flax" (jax) reads bfloat16 too, which numpy's loader rejects.
    with safe_open(file, framework="flax") as f:
        return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}  # noqa: SIM118


def _read_torch_pickle(file: Path) -> dict[str, np.ndarray]:
    """A ``pytorch_model.bin`` state dict, unpickled with ``weights_only=True``: a pickle that
    would build anything but tensors (and so could run code) is refused, never executed."""
    import pickle

    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{file} is a PyTorch pickle; reading it needs torch (pip install torch). Or, where "
            "torch is installed, re-save the model with save_pretrained(dir) (safetensors)."
        ) from e
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line), lines[-1] if lines else "")
        raise ValueError(
            f"Refusing {file}: it is not a plain state dict of tensors, and unpickling it could "
            f"run code it contains ({reason}). Get the weights as model.safetensors, or, only if "
            "you trust where the file came from, load it in PyTorch yourself and save its state "
            "dict with safetensors."
        ) from e
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"{file} is not a state dict (variable name -> tensor).")
    return {k: v.float().numpy() for k, v in state.items()}


def _read_hf_tensors(path: Path) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for file in _hf_weight_files(path):
        read = _read_safetensors if file.suffix == ".safetensors" else _read_torch_pickle
        tensors |= read(file)
    return tensors


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


# ---------------------------------------------------------------------- sentence-transformers


def _sentence_transformers_modules(path: Path) -> list[dict[str, Any]] | None:
    """The entries of a sentence-transformers ``modules.json`` in order, each with its "kind"
    (the class name: Transformer, Pooling, Normalize, ...); None for a plain directory."""
    file = path / "modules.json"
    if not file.is_file():
        return None
    with file.open() as f:
        modules = json.load(f)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{file} is not a list of modules; fix the file.")
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    return [m | {"kind": str(m.get("type", "")).rsplit(".", 1)[-1]} for m in modules]


def _model_dir(path: Path) -> Path:
    """Where config.json, the weights and the tokenizer are: ``path``, or in a
    sentence-transformers directory the folder of its Transformer module (often ``path``)."""
    modules = _sentence_transformers_modules(path)
    if modules is None:
        return path
    encoders = [m for m in modules if m["kind"] == "Transformer"]
    if len(encoders) != 1:
        raise ValueError(
            f"{path / 'modules.json'} lists {len(encoders)} Transformer modules; bert_jax reads "
            "sentence-transformers models with exactly one."
        )
    return path / encoders[0].get("path", "")


# sentence-transformers' Pooling config field -> bert_jax's Pooling mode, in POOLING_MODES order.
_ST_POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
}


def load_sentence_pooling(path: str | os.PathLike) -> Pooling | None:
    """The pooling of a sentence-transformers directory (``modules.json``), or None without one.

    Transformer -> Pooling (cls / max / mean, or several, concatenated) -> optional Normalize is
    reproduced; any other module (Dense, LayerNorm, ...) or pooling mode (weighted mean, last
    token, mean_sqrt_len) is refused by name, since the embeddings would differ.

    >>> load_sentence_pooling("all-MiniLM-L6-v2/")  # doctest: +SKIP
    Pooling(modes=('mean',), normalize=True, max_seq_length=256)
    """
    path = Path(path)
    modules = _sentence_transformers_modules(path)
    if modules is None:
        return None
    kinds = [m["kind"] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(
            f"{path / 'modules.json'} has the modules {kinds}; bert_jax reproduces Transformer "
            "-> Pooling [-> Normalize] only, so its sentence embeddings would differ. Load the "
            "BERT alone with interop.load_hf."
        )
    pooling_file = path / modules[1].get("path", "") / "config.json"
    config = _read_json(pooling_file, "sentence-transformers Pooling config")
    unsupported = sorted(
        k
        for k, v in config.items()
        if k.startswith("pooling_mode_") and v and k not in _ST_POOLING_MODES
    )
    if unsupported:
        raise ValueError(
            f"{pooling_file}: {unsupported} is set; bert_jax pools with "
            f"{sorted(_ST_POOLING_MODES)} only."
        )
    modes = [mode for k, mode in _ST_POOLING_MODES.items() if config.get(k)]
    if not modes:
        raise ValueError(f"{pooling_file} sets none of {sorted(_ST_POOLING_MODES)}; fix the file.")
    st_config = _model_dir(path) / "sentence_bert_config.json"
    max_seq_length = None
    if st_config.is_file():
        max_seq_length = _read_json(st_config, "sentence-bert config").get("max_seq_length")
    return Pooling(tuple(modes), kinds[-1] == "Normalize", max_seq_length)


# ------------------------------------------------------------------------ Hugging Face import


def load_hf(path: str | os.PathLike, *, seed: int = 0) -> tuple[BertConfig, dict[str, Any]]:
    """Loads a Hugging Face BERT directory: config.json and the weights, in any of the layouts
    transformers writes.

    Weights: ``model.safetensors``, sharded safetensors (``model.safetensors.index.json``),
    ``pytorch_model.bin`` or sharded ``pytorch_model.bin.index.json``; pickles are read with
    ``torch.load(weights_only=True)``, and one holding anything but tensors is refused. A
    sentence-transformers directory (``modules.json``) is read from its Transformer module's
    folder (its pooling: :func:`load_sentence_pooling`).

    BertModel, BertForPreTraining, BertForMaskedLM, BertForSequenceClassification,
    BertForQuestionAnswering, BertForMultipleChoice and BertForTokenClassification checkpoints
    are accepted, with or without the ``bert.`` prefix; ``is_decoder`` ones (BertLMHeadModel)
    give a causal config. Returns the config and a float32
    BertForPreTraining parameter tree, plus ``"classifier"`` (sequence / token classification,
    multiple choice: ``[hidden, labels]``) or ``"qa_outputs"`` when the checkpoint has one; the
    pooler / MLM / NSP heads a checkpoint lacks are initialised afresh from ``seed`` (and named
    in one warning).

    >>> cfg, params = load_hf("bert-base-uncased/")  # doctest: +SKIP
    >>> params["bert"]["layer_0"]["attention"]["query"]["kernel"].shape  # doctest: +SKIP
    (768, 12, 64)
    """
    path = _model_dir(Path(path))
    cfg = _hf_config(path)
    tensors = _normalise_hf_keys(_read_hf_tensors(path), str(path))
    return cfg, _assemble(cfg, tensors, lambda p: p.hf, lambda p: p.kernel, str(path), seed)


def load_hf_tokenizer(
    path: str | os.PathLike,
    *,
    vocab_file: str | os.PathLike | None = None,
    lower_case: bool | None = None,
) -> tokenizers.WordPiece:
    """The WordPiece tokenizer of a Hugging Face (or sentence-transformers) directory, giving the
    ids ``transformers.AutoTokenizer`` gives.

    Reads ``tokenizer.json`` if present (what AutoTokenizer loads), else ``vocab.txt`` (also the
    original TF release's layout); ``vocab_file`` overrides both. As AutoTokenizer does for BERT,
    ``tokenizer_config.json``'s ``do_lower_case`` / ``strip_accents`` / ``tokenize_chinese_chars``
    (BertTokenizer's defaults True / None / True where unstated) decide the normalisation; a
    sentence-transformers ``do_lower_case`` lower-cases the text first; ``lower_case`` overrides
    it all (accent stripping then follows it).

    >>> tok = load_hf_tokenizer("all-MiniLM-L6-v2/")  # doctest: +SKIP
    >>> tok = load_hf_tokenizer("cased_L-12_H-768_A-12/", lower_case=False)  # doctest: +SKIP
    """
    path = _model_dir(Path(path))
    config_file = path / "tokenizer_config.json"
    config = _read_json(config_file, "tokenizer config") if config_file.is_file() else {}
    options = dict(
        lower_case=bool(config.get("do_lower_case", True)),
        strip_accents=config.get("strip_accents"),
        tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
    )
    if vocab_file is None and (path / "tokenizer.json").is_file():
        tokenizer = tokenizers.from_hf_tokenizer_json(path / "tokenizer.json")
        # BertTokenizerFast rebuilds the normaliser from these arguments; another tokenizer
        # class (e.g. PreTrainedTokenizerFast) runs the file as it is.
        if config.get("tokenizer_class") in (None, "BertTokenizer", "BertTokenizerFast"):
            tokenizer = tokenizer.replace(**options)
    else:
        vocab = Path(vocab_file) if vocab_file is not None else path / tokenizers.VOCAB_NAME
        if not vocab.is_file():
            raise FileNotFoundError(
                f"No tokenizer: {vocab} does not exist and {path} has no tokenizer.json. Pass "
                "the vocabulary (--vocab=PATH/vocab.txt, or vocab_file=)."
            )
        tokenizer = tokenizers.WordPiece(vocab, **options)
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file() and _read_json(st_config, "sentence-bert config").get("do_lower_case"):
        tokenizer = tokenizer.replace(lower_case=True)  # str.lower() before the tokenizer
    if lower_case is not None:
        tokenizer = tokenizer.replace(lower_case=lower_case, strip_accents=None)
    return tokenizer


# ------------------------------------------------------------------------ Hugging Face export

# The transformers classes save_hf writes, and the parameter groups each holds beside the
# encoder (HF's BertForMaskedLM, BertForTokenClassification and BertForQuestionAnswering have
# no pooler).
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "BertModel": ("pooler",),
    "BertForPreTraining": ("pooler", "mlm_head", "nsp_head"),
    "BertForMaskedLM": ("mlm_head",),
    "BertLMHeadModel": ("mlm_head",),  # a causal model's next-token head (is_decoder)
    "BertForSequenceClassification": ("pooler", "classifier"),
    "BertForMultipleChoice": ("pooler", "classifier"),
    "BertForTokenClassification": ("classifier",),
    "BertForQuestionAnswering": ("qa_outputs",),
}
# Whose "classifier" scores labels (config.json's id2label); multiple choice scores choices.
_LABELLED = ("BertForSequenceClassification", "BertForTokenClassification")


def _default_architecture(groups: set[str], causal: bool) -> str:
    if "mlm_head" in groups and causal:
        return "BertLMHeadModel"
    if "mlm_head" in groups:
        return "BertForPreTraining" if "nsp_head" in groups else "BertForMaskedLM"
    if "classifier" in groups:
        return "BertForSequenceClassification"
    if "qa_outputs" in groups:
        return "BertForQuestionAnswering"
    return "BertModel"


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
        **({"is_decoder": True} if model_config.causal else {}),
    }


def _hf_model_json(
    model_config: BertConfig,
    architecture: str,
    classifier_width: int | None,
    label_names: Sequence[str] | None,
) -> dict[str, Any]:
    """config.json for ``architecture``, with its labels (checked against the classifier)."""
    config = {
        "architectures": [architecture],
        **hf_config_fields(model_config),
        "torch_dtype": "float32",
    }
    if architecture == "BertForMultipleChoice" and classifier_width != 1:
        raise ValueError(
            f"A BertForMultipleChoice scores each choice with one output; params' classifier has "
            f"{classifier_width}. Is it a BertForSequenceClassification?"
        )
    if label_names is None:
        if architecture in _LABELLED:
            config["num_labels"] = classifier_width
        return config
    if architecture not in _LABELLED:
        raise ValueError(f"label_names is for {list(_LABELLED)}, not {architecture}.")
    names = [str(name) for name in label_names]
    if len(names) != classifier_width or len(set(names)) != len(names):
        raise ValueError(
            f"label_names={names}: the classifier has {classifier_width} labels; give one "
            "distinct name for each, in label-id order."
        )
    # transformers counts the labels from id2label (no num_labels, as its own save writes).
    config["id2label"] = dict(enumerate(names))
    config["label2id"] = {name: i for i, name in enumerate(names)}
    return config


def save_hf(
    model_config: BertConfig,
    params: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    tokenizer: tokenizers.Tokenizer | None,
    architecture: str | None = None,
    label_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> None:
    """Writes a Hugging Face directory that transformers loads whole: model.safetensors (float32),
    config.json and, from ``tokenizer``, vocab.txt, tokenizer.json, tokenizer_config.json and
    special_tokens_map.json (:func:`bert_jax.tokenizers.hf_tokenizer_files`; SentencePiece
    tokenizers are refused there). ``tokenizer=None`` writes the weights alone.

    ``architecture`` is one of :data:`ARCHITECTURES`; by default a tree with MLM and NSP heads is a
    BertForPreTraining (MLM alone: BertForMaskedLM; a causal model's: BertLMHeadModel, with
    ``is_decoder``, and pooled classes are refused for it), with ``"classifier"`` a
    BertForSequenceClassification, with ``"qa_outputs"`` a BertForQuestionAnswering, else a
    BertModel. bert_jax's BertForMultipleChoice and BertForTokenClassification trees hold a
    ``"classifier"`` too: name their architecture. Groups the class has no place for are left
    out (logged), so a pretraining tree can be exported as a BertModel. ``label_names`` (index =
    label id) become config.json's ``id2label`` / ``label2id`` for the classification classes.

    >>> save_hf(cfg, params, "exported/", tokenizer=tok)  # doctest: +SKIP
    >>> transformers.AutoModelForPreTraining.from_pretrained("exported/")  # doctest: +SKIP
    >>> save_hf(cfg, {"bert": ..., "classifier": ...}, "ner/", tokenizer=tok,
    ...         architecture="BertForTokenClassification", label_names=["O", "B-PER", "I-PER"])
    """
    from safetensors.numpy import save_file

    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to replace it.")
    params = to_layer_layout(nn.unbox(dict(params)), scan_layers=False)
    flat = traverse_util.flatten_dict(jax.device_get(params))
    full_table = _param_table(model_config.num_layers)
    unexpected = sorted("/".join(k) for k in set(flat) - {p.path for p in full_table})
    if unexpected:
        raise ValueError(f"params has entries with no Hugging Face name: {unexpected}.")
    missing = ["/".join(p.path) for p in full_table if p.group == "encoder" and p.path not in flat]
    if missing:
        raise ValueError(f"params lacks encoder entries {missing}.")

    has = {_group_of(k) for k in flat}
    architecture = architecture or _default_architecture(has, model_config.causal)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r}; choose one of {list(ARCHITECTURES)}.")
    if model_config.causal and "pooler" in ARCHITECTURES[architecture]:
        raise ValueError(
            f"A causal model's pooler reads the last token, transformers' {architecture} reads "
            "[CLS]: it would compute another function. Export its encoder and heads as a "
            "BertLMHeadModel, BertForTokenClassification or BertForQuestionAnswering."
        )
    lacking = [g for g in ARCHITECTURES[architecture] if g not in has]
    if lacking:
        raise ValueError(
            f"A {architecture} needs params{lacking}, which this tree lacks; pass the "
            f"architecture its heads make (one of {list(ARCHITECTURES)})."
        )
    keep = {"encoder", *ARCHITECTURES[architecture]}
    if has - keep:
        _log.info("%s has no place for %s; leaving them out.", architecture, sorted(has - keep))
    table = [p for p in full_table if p.path in flat and p.group in keep]

    width = int(flat["classifier", "bias"].shape[0]) if "classifier" in keep else None
    config = _hf_model_json(model_config, architecture, width, label_names)

    # The tokenizer's files first: a tokenizer that cannot be exported leaves nothing written.
    tokenizer_files = {}
    if tokenizer is not None:
        tokenizer_files = tokenizers.hf_tokenizer_files(
            tokenizer, model_max_length=model_config.max_position_embeddings
        )
        config["pad_token_id"] = tokenizer.pad_id
    else:
        _log.info("No tokenizer given: %s holds the weights alone.", path)

    # A bare BertModel's keys have no "bert." prefix (what BertModel.save_pretrained writes).
    def name(p: _Param) -> str:
        return p.hf.removeprefix("bert.") if architecture == "BertModel" else p.hf

    tensors = {name(p): _export_hf(p, np.asarray(flat[p.path], np.float32)) for p in table}
    path.mkdir(parents=True, exist_ok=True)
    # transformers refuses safetensors files without format metadata.
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    with (path / "config.json").open("w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    for file_name, text in tokenizer_files.items():
        (path / file_name).write_text(text, encoding="utf-8")


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
