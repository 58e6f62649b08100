"""Checkpoint interop against transformers (PyTorch) as the reference implementation.

Every reference model has *all* parameters randomised (biases and LayerNorm parameters included,
which their default initialisation leaves at 0 / 1 and so would hide a layout bug), runs in fp32
eval mode, and its outputs are compared with bert_jax's at every position within 1e-4.
"""

import copy
import dataclasses
import functools
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from safetensors.numpy import load_file, save_file

from bert_jax import checkpoints, convert, interop, pretrained, tokenizers
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import (
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    PreTrainingOutput,
)
from bert_jax.tokenizers import from_hf_tokenizer_json

ATOL = 1e-4

# Two shapes: an even head count with exact gelu, and an odd head count, three token types, the
# tanh gelu and a non-default LayerNorm epsilon.
HF_CONFIGS = {
    "h64_gelu": dict(
        vocab_size=211,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
    ),
    "h48_gelu_new": dict(
        vocab_size=157,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=96,
        max_position_embeddings=64,
        type_vocab_size=3,
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
    ),
}


def randomise_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Gives every parameter of ``model`` random values, in fp32 eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)
    return model.float().eval()


def make_batch(cfg: dict, seed: int = 0, length: int = 16) -> dict[str, np.ndarray]:
    """Three rows: no padding, some padding, much padding; every token type present."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(0, cfg["vocab_size"], (3, length))
    token_type_ids = np.zeros((3, length), np.int64)
    for t in range(1, cfg["type_vocab_size"]):
        token_type_ids[:, t * length // cfg["type_vocab_size"] :] = t
    attention_mask = np.ones((3, length), np.int64)
    attention_mask[1, -5:] = 0
    attention_mask[2, -9:] = 0
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)


def torch_inputs(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


@torch.no_grad()
def hf_pretraining_outputs(model, batch) -> dict[str, np.ndarray]:
    """The four outputs of a transformers BertForPreTraining, named as bert_jax names them."""
    inputs = torch_inputs(batch)
    enc = model.bert(**inputs)
    heads = model(**inputs)
    return dict(
        sequence_output=enc.last_hidden_state.numpy(),
        pooled_output=enc.pooler_output.numpy(),
        mlm_logits=heads.prediction_logits.numpy(),
        nsp_logits=heads.seq_relationship_logits.numpy(),
    )


@functools.cache
def _jitted_apply(module: nn.Module):
    return jax.jit(
        lambda params, batch, positions: module.apply(
            {"params": params}, **batch, masked_positions=positions, deterministic=True
        )
    )


def jax_pretraining_outputs(cfg: BertConfig, params, batch, masked_positions=None):
    batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}
    out = _jitted_apply(BertForPreTraining(cfg))(params, batch, masked_positions)
    return {k: np.asarray(v) for k, v in dataclasses.asdict(out).items()}


def assert_outputs_close(ours: dict, reference: dict) -> None:
    assert ours.keys() == reference.keys()
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], atol=ATOL, rtol=0, err_msg=name)


@dataclasses.dataclass
class HFCase:
    hf_config: dict
    model: transformers.BertForPreTraining
    path: str  # where save_pretrained wrote it
    batch: dict
    expected: dict  # hf_pretraining_outputs


def build_case(hf_config: dict, path: Path) -> HFCase:
    """A random transformers BertForPreTraining saved in ``path`` (safetensors), and its outputs."""
    model = randomise_(transformers.BertForPreTraining(transformers.BertConfig(**hf_config)), 1)
    model.save_pretrained(path)
    batch = make_batch(hf_config)
    return HFCase(hf_config, model, str(path), batch, hf_pretraining_outputs(model, batch))


@pytest.fixture(scope="module", params=list(HF_CONFIGS))
def hf_case(request, tmp_path_factory) -> HFCase:
    return build_case(HF_CONFIGS[request.param], tmp_path_factory.mktemp(request.param))


# ------------------------------------------------------------------------------------ load_hf


def test_load_hf_matches_transformers(hf_case):
    cfg, params = interop.load_hf(hf_case.path)
    expected_act = {"gelu": "gelu", "gelu_new": "gelu_tanh"}[hf_case.hf_config["hidden_act"]]
    assert cfg.hidden_act == expected_act
    assert cfg.layer_norm_eps == hf_case.hf_config.get("layer_norm_eps", 1e-12)
    assert cfg.type_vocab_size == hf_case.hf_config["type_vocab_size"]
    assert set(params) == {"bert", "mlm_head", "nsp_head"}
    assert_outputs_close(jax_pretraining_outputs(cfg, params, hf_case.batch), hf_case.expected)


def test_load_hf_reads_pytorch_model_bin(hf_case, tmp_path):
    hf_case.model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "pytorch_model.bin").exists()
    assert not (tmp_path / "model.safetensors").exists()
    cfg, params = interop.load_hf(tmp_path)
    assert_outputs_close(jax_pretraining_outputs(cfg, params, hf_case.batch), hf_case.expected)


def test_load_hf_reads_bfloat16(hf_case, tmp_path):
    copy.deepcopy(hf_case.model).to(torch.bfloat16).save_pretrained(tmp_path)
    _, params = interop.load_hf(tmp_path)
    expected = hf_case.model.bert.embeddings.word_embeddings.weight.detach()
    got = params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected.to(torch.bfloat16).float().numpy())


def test_masked_positions_gather_the_full_logits(hf_case):
    cfg, params = interop.load_hf(hf_case.path)
    positions = np.array([[0, 3, 15], [1, 1, 10], [2, 7, 0]])
    gathered = jax_pretraining_outputs(cfg, params, hf_case.batch, jnp.asarray(positions))
    full = hf_case.expected["mlm_logits"]
    expected = np.take_along_axis(full, positions[..., None], axis=1)
    np.testing.assert_allclose(gathered["mlm_logits"], expected, atol=ATOL, rtol=0)


def test_load_hf_bert_model_initialises_heads(hf_case, tmp_path, caplog):
    encoder = transformers.BertModel(transformers.BertConfig(**hf_case.hf_config))
    encoder.load_state_dict(hf_case.model.bert.state_dict())
    encoder.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO):
        cfg, params = interop.load_hf(tmp_path)
    [record] = [
        r for r in caplog.records if r.name == "bert_jax.interop" and "afresh" in r.getMessage()
    ]
    assert "mlm_head" in record.getMessage() and "nsp_head" in record.getMessage()
    assert "pooler" not in record.getMessage()

    ours = jax_pretraining_outputs(cfg, params, hf_case.batch)
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(ours[name], hf_case.expected[name], atol=ATOL, rtol=0)
    # Fresh heads follow BERT's initialisation: normal(initializer_range) kernels, zero biases.
    kernel = np.asarray(params["mlm_head"]["dense"]["kernel"])
    assert abs(kernel.std() - cfg.initializer_range) < 0.2 * cfg.initializer_range
    assert not np.any(params["mlm_head"]["output_bias"]) and not np.any(params["nsp_head"]["bias"])
    np.testing.assert_array_equal(params["mlm_head"]["layer_norm"]["scale"], 1.0)


def test_load_hf_masked_lm_checkpoint(hf_case, tmp_path, caplog):
    """BertForMaskedLM has no pooler and no NSP head; its MLM logits must still match."""
    mlm = transformers.BertForMaskedLM(transformers.BertConfig(**hf_case.hf_config))
    missing, unexpected = mlm.load_state_dict(hf_case.model.state_dict(), strict=False)
    assert not missing
    mlm.eval().save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO):
        cfg, params = interop.load_hf(tmp_path)
    assert "pooler / nsp_head" in caplog.text
    ours = jax_pretraining_outputs(cfg, params, hf_case.batch)
    np.testing.assert_allclose(
        ours["mlm_logits"], hf_case.expected["mlm_logits"], atol=ATOL, rtol=0
    )


def test_load_hf_sequence_classification(hf_case, tmp_path):
    hf_config = transformers.BertConfig(**hf_case.hf_config, num_labels=3)
    model = randomise_(transformers.BertForSequenceClassification(hf_config), 2)
    model.save_pretrained(tmp_path)
    cfg, params = interop.load_hf(tmp_path)
    assert params["classifier"]["kernel"].shape == (cfg.hidden_size, 3)

    with torch.no_grad():
        expected = model(**torch_inputs(hf_case.batch)).logits.numpy()
    ours = jax_classifier_logits(cfg, params, hf_case.batch)
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0)

    # A fine-tuned tree (encoder + classifier) exports as a BertForSequenceClassification.
    fine_tuned = {"bert": params["bert"], "classifier": params["classifier"]}
    interop.save_hf(cfg, fine_tuned, tmp_path / "exported", tokenizer=None)
    exported, info = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "exported", output_loading_info=True
    )
    assert not any(info.values()), info
    with torch.no_grad():
        logits = exported.eval()(**torch_inputs(hf_case.batch)).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=ATOL, rtol=0)


def test_load_hf_question_answering_and_export(hf_case, tmp_path):
    """BertForQuestionAnswering: start/end logits within 1e-4 of transformers, both directions."""
    model = randomise_(
        transformers.BertForQuestionAnswering(transformers.BertConfig(**hf_case.hf_config)), 3
    )
    model.save_pretrained(tmp_path)
    cfg, params = interop.load_hf(tmp_path)
    assert params["qa_outputs"]["kernel"].shape == (cfg.hidden_size, 2)
    with torch.no_grad():
        out = model(**torch_inputs(hf_case.batch))
    span_params = {"bert": params["bert"], "qa_outputs": params["qa_outputs"]}
    start, end = jax_head_outputs(BertForQuestionAnswering(cfg), span_params, hf_case.batch)
    np.testing.assert_allclose(start, out.start_logits.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(end, out.end_logits.numpy(), atol=ATOL, rtol=0)

    # A fine-tuned span tree exports as a BertForQuestionAnswering that loads whole.
    interop.save_hf(cfg, span_params, tmp_path / "exported", tokenizer=None)
    exported, info = transformers.BertForQuestionAnswering.from_pretrained(
        tmp_path / "exported", output_loading_info=True
    )
    assert not any(info.values()), info
    with torch.no_grad():
        again = exported.eval()(**torch_inputs(hf_case.batch))
    np.testing.assert_allclose(again.start_logits.numpy(), out.start_logits.numpy(), atol=ATOL)
    np.testing.assert_allclose(again.end_logits.numpy(), out.end_logits.numpy(), atol=ATOL)


@functools.cache
def _jitted_head(module: nn.Module):
    return jax.jit(functools.partial(module.apply, deterministic=True))


def jax_head_outputs(module: nn.Module, params, batch):
    """``module``'s outputs (numpy) on ``params`` (the encoder and the head's group)."""
    out = _jitted_head(module)({"params": params}, **batch)
    return jax.tree.map(np.asarray, out)


def jax_classifier_logits(cfg: BertConfig, params, batch) -> np.ndarray:
    model = BertForSequenceClassification(cfg, num_labels=params["classifier"]["bias"].shape[0])
    classifier_params = {"bert": params["bert"], "classifier": params["classifier"]}
    return jax_head_outputs(model, classifier_params, batch)


# ------------------------------------------------------------------------------------ save_hf


def random_bert_jax_params(cfg: BertConfig, seed: int):
    """Random values for every leaf of bert_jax's BertForPreTraining tree, LayerNorm scales ~1."""
    abstract = jax.eval_shape(
        lambda: BertForPreTraining(cfg).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    )
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        return 1.0 + 0.2 * noise if path[-1].key == "scale" else 0.1 * noise

    return jax.tree.map_with_path(draw, nn.unbox(abstract["params"]))


def test_save_hf_loads_in_transformers(hf_case, tmp_path):
    cfg, _ = interop.load_hf(hf_case.path)  # the same config, with our field names
    params = random_bert_jax_params(cfg, seed=3)
    interop.save_hf(cfg, params, tmp_path / "exported", tokenizer=None)

    model, info = transformers.BertForPreTraining.from_pretrained(
        tmp_path / "exported", output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    assert model.config.hidden_act == hf_case.hf_config["hidden_act"]
    assert model.config.layer_norm_eps == cfg.layer_norm_eps
    expected = hf_pretraining_outputs(model.eval(), hf_case.batch)
    assert_outputs_close(jax_pretraining_outputs(cfg, params, hf_case.batch), expected)


def test_save_hf_refuses_non_empty_directory(tmp_path):
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    params = random_bert_jax_params(cfg, seed=0)
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        interop.save_hf(cfg, params, tmp_path, tokenizer=None)
    interop.save_hf(cfg, params, tmp_path, tokenizer=None, overwrite=True)
    assert (tmp_path / "model.safetensors").exists()


def test_save_hf_rejects_unknown_entries(tmp_path):
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    params = random_bert_jax_params(cfg, seed=0)
    params["extra_head"] = {"kernel": np.zeros((16, 2), np.float32)}
    with pytest.raises(ValueError, match="extra_head/kernel"):
        interop.save_hf(cfg, params, tmp_path / "out", tokenizer=None)


# ------------------------------------------------------------------------- load_hf bad inputs


def test_load_hf_rejects_other_model_types(hf_case, tmp_path):
    config = json.loads((Path(hf_case.path) / "config.json").read_text())
    config["model_type"] = "roberta"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type='roberta'"):
        interop.load_hf(tmp_path)


def write_safetensors(tmp_path: Path, hf_case: HFCase, edit) -> Path:
    """A copy of hf_case's checkpoint whose tensors went through ``edit(dict) -> None``."""
    tensors = load_file(Path(hf_case.path) / "model.safetensors")
    edit(tensors)
    tmp_path.mkdir(exist_ok=True)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(Path(hf_case.path) / "config.json", tmp_path)
    return tmp_path


def test_load_hf_rejects_unexpected_and_missing_keys(hf_case, tmp_path):
    extra = "bert.encoder.layer.0.attention.self.rotary.weight"
    path = write_safetensors(
        tmp_path / "extra", hf_case, lambda t: t.update({extra: np.zeros(3, np.float32)})
    )
    with pytest.raises(ValueError, match=re.escape(extra)):
        interop.load_hf(path)

    gone = "bert.encoder.layer.1.output.LayerNorm.weight"
    path = write_safetensors(tmp_path / "missing", hf_case, lambda t: t.pop(gone))
    with pytest.raises(ValueError, match=f"missing encoder variables.*{re.escape(gone)}"):
        interop.load_hf(path)

    # A layer too many in config.json: every variable of the last layer is missing.
    config = json.loads((path / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"layer.{config['num_hidden_layers'] - 1}.attention"):
        interop.load_hf(path)


def test_load_hf_rejects_wrong_shapes(hf_case, tmp_path):
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    path = write_safetensors(tmp_path, hf_case, lambda t: t.update({name: t[name].T.copy()}))
    with pytest.raises(ValueError, match=f"{re.escape(name)} has shape"):
        interop.load_hf(path)


def test_load_hf_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        interop.load_hf(tmp_path)


# --------------------------------------------------------------------------------- load_tf


def tf_variables(model: transformers.BertForPreTraining) -> dict[str, np.ndarray]:
    """The weights of ``model`` under google-research/bert's variable names and layouts."""
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    out = {}

    def dense(tf_name, hf_name):  # TF kernels are [in, out]
        out[f"{tf_name}/kernel"] = sd[f"{hf_name}.weight"].T
        out[f"{tf_name}/bias"] = sd[f"{hf_name}.bias"]

    def norm(tf_name, hf_name):
        out[f"{tf_name}/gamma"] = sd[f"{hf_name}.weight"]
        out[f"{tf_name}/beta"] = sd[f"{hf_name}.bias"]

    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        out[f"bert/embeddings/{name}"] = sd[f"bert.embeddings.{name}.weight"]
    norm("bert/embeddings/LayerNorm", "bert.embeddings.LayerNorm")
    for i in range(model.config.num_hidden_layers):
        tf_layer, hf_layer = f"bert/encoder/layer_{i}", f"bert.encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            dense(f"{tf_layer}/attention/self/{proj}", f"{hf_layer}.attention.self.{proj}")
        dense(f"{tf_layer}/attention/output/dense", f"{hf_layer}.attention.output.dense")
        norm(f"{tf_layer}/attention/output/LayerNorm", f"{hf_layer}.attention.output.LayerNorm")
        dense(f"{tf_layer}/intermediate/dense", f"{hf_layer}.intermediate.dense")
        dense(f"{tf_layer}/output/dense", f"{hf_layer}.output.dense")
        norm(f"{tf_layer}/output/LayerNorm", f"{hf_layer}.output.LayerNorm")
    dense("bert/pooler/dense", "bert.pooler.dense")
    dense("cls/predictions/transform/dense", "cls.predictions.transform.dense")
    norm("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm")
    out["cls/predictions/output_bias"] = sd["cls.predictions.bias"]
    out["cls/seq_relationship/output_weights"] = sd["cls.seq_relationship.weight"]  # [2, H]
    out["cls/seq_relationship/output_bias"] = sd["cls.seq_relationship.bias"]
    return out


def write_tf_checkpoint(variables: dict[str, np.ndarray], prefix: Path) -> None:
    """A TF1 checkpoint with exactly these variable names, as the original run_*.py wrote them."""
    import tensorflow as tf

    with tf.Graph().as_default():
        for name, value in variables.items():
            tf.compat.v1.Variable(value, name=name)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(prefix), write_meta_graph=False)


@dataclasses.dataclass
class TFCase:
    hf: HFCase
    prefix: Path
    bert_config: Path
    classifier: tuple[np.ndarray, np.ndarray]  # output_weights [K, H], output_bias [K]


@pytest.fixture(scope="module")
def tf_case(tmp_path_factory) -> TFCase:
    """A fine-tuned-GLUE-style TF checkpoint (BERT + MLM/NSP + classifier + Adam slots)."""
    # The original code's "gelu" is the tanh approximation and its LayerNorm epsilon is 1e-12.
    hf_config = dict(HF_CONFIGS["h48_gelu_new"], layer_norm_eps=1e-12)
    root = tmp_path_factory.mktemp("tf")
    hf = build_case(hf_config, root / "hf")
    variables = tf_variables(hf.model)
    rng = np.random.default_rng(4)
    classifier = (
        rng.standard_normal((3, hf_config["hidden_size"])).astype(np.float32),
        rng.standard_normal(3).astype(np.float32),
    )
    variables["output_weights"], variables["output_bias"] = classifier
    for name in ("bert/pooler/dense/kernel", "output_weights"):
        variables[f"{name}/adam_m"] = np.ones_like(variables[name])
        variables[f"{name}/adam_v"] = np.ones_like(variables[name])
    variables["global_step"] = np.int64(1000)
    write_tf_checkpoint(variables, root / "tf" / "bert_model.ckpt")

    tf_config = {k: v for k, v in hf_config.items() if k != "layer_norm_eps"}
    tf_config.update(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    tf_config.update(initializer_range=0.02)
    bert_config = root / "tf" / "bert_config.json"
    bert_config.write_text(json.dumps(tf_config))
    return TFCase(hf, root / "tf" / "bert_model.ckpt", bert_config, classifier)


def test_load_tf_matches_transformers(tf_case):
    cfg, params = interop.load_tf(tf_case.prefix, tf_case.bert_config)
    assert cfg.hidden_act == "gelu_tanh" and cfg.layer_norm_eps == 1e-12
    assert set(params) == {"bert", "mlm_head", "nsp_head", "classifier"}
    ours = jax_pretraining_outputs(cfg, params, tf_case.hf.batch)
    assert_outputs_close(ours, tf_case.hf.expected)

    # The GLUE classifier: logits = pooled @ output_weights.T + output_bias.
    weights, bias = tf_case.classifier
    expected = tf_case.hf.expected["pooled_output"] @ weights.T + bias
    ours = jax_classifier_logits(cfg, params, tf_case.hf.batch)
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0)


def test_load_tf_names_unknown_variables(tf_case, tmp_path):
    write_tf_checkpoint({"bert/encoder/layer_0/adapter/kernel": np.zeros(2)}, tmp_path / "ckpt")
    with pytest.raises(ValueError, match="bert/encoder/layer_0/adapter/kernel"):
        interop.load_tf(tmp_path / "ckpt", tf_case.bert_config)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        interop.load_tf(tmp_path / "nowhere", tf_case.bert_config)


# ------------------------------------------------------------------------- convert, pretrained

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s"]


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_convert_hf(hf_case, tmp_path):
    source = tmp_path / "hf"
    shutil.copytree(hf_case.path, source)
    (source / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (source / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    argv = ["--from=hf", f"--input={source}", f"--output={tmp_path / 'out'}"]
    convert.main(argv)

    cfg, params = pretrained.load(tmp_path / "out")
    expected_cfg, expected_params = interop.load_hf(source)
    assert cfg == expected_cfg
    assert_trees_equal(params, expected_params)
    tokenizer = tokenizers.load_tokenizer(str(tmp_path / "out" / "tokenizer"))
    assert isinstance(tokenizer, tokenizers.WordPiece) and not tokenizer.lower_case
    assert tokenizer.tokenize("Hellos world") == ["[UNK]", "world"]  # cased: "Hellos" unknown

    with pytest.raises(FileExistsError, match="not empty"):
        convert.main(argv)


def test_convert_tf(tf_case, tmp_path):
    (tf_case.prefix.parent / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    convert.main(["--from=tf", f"--input={tf_case.prefix}", f"--output={tmp_path}"])
    cfg, params = pretrained.load(tmp_path)
    expected_cfg, expected_params = interop.load_tf(tf_case.prefix, tf_case.bert_config)
    assert cfg == expected_cfg
    assert_trees_equal(params, expected_params)
    assert tokenizers.load_tokenizer(str(tmp_path / "tokenizer")).lower_case


def test_pretrained_restores_into_shardings(tmp_path):
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    params = random_bert_jax_params(cfg, seed=5)
    pretrained.save(tmp_path / "model", cfg, params)
    assert not (tmp_path / "model" / "tokenizer").exists()

    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    shardings = jax.tree.map(lambda _: NamedSharding(mesh, P()), params)
    vocab_sharded = NamedSharding(mesh, P("d", None))
    shardings["bert"]["embeddings"]["word_embeddings"]["embedding"] = vocab_sharded
    restored_cfg, restored = pretrained.load(tmp_path / "model", shardings=shardings)
    assert restored_cfg == cfg
    assert_trees_equal(restored, params)
    word = restored["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert word.sharding == vocab_sharded

    with pytest.raises(FileExistsError, match="not empty"):
        pretrained.save(tmp_path / "model", cfg, params)


def test_pretrained_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        pretrained.load(tmp_path / "absent")
    (tmp_path / "params").mkdir()
    (tmp_path / "model_config.json").write_text(json.dumps({"hidden_size": 16, "num_heads": 2}))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "params"))):
        pretrained.load(tmp_path)


# ------------------------------------------------------------- real layouts, as researchers have
# them: each built by transformers / torch from one tiny random model and vocabulary.

TINY = HF_CONFIGS["h64_gelu"]  # its BertForPreTraining is compiled above already
LENGTH = 16  # make_batch's: the same shapes reuse the compiled functions
# Accents, CJK, punctuation, and words whose case matters.
TEXTS = [
    "Hello, World! Café naïve RÉSUMÉ.",
    "中文字符 and 日本語 (mixed)!",
    "The Quick fox; it's über-cool?",
]


def write_tiny_vocab(path: Path) -> Path:
    """Fewer than TINY's 211 tokens: every character of TEXTS is known, some words whole."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    letters += [c.upper() for c in letters] + list("éÉïüÜ")
    tokens = [*tokenizers.SPECIAL_TOKENS, *(c for c in "!\"'(),-.:;?")]
    tokens += letters + ["##" + c for c in letters] + list("中文字符日本語")
    tokens += ["hello", "Hello", "world", "World", "café", "cafe", "the", "The", "##ing", "##es"]
    assert len(set(tokens)) == len(tokens)
    assert len(tokens) <= TINY["vocab_size"]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> HFCase:
    return build_case(TINY, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory) -> Path:
    return write_tiny_vocab(tmp_path_factory.mktemp("tiny_vocab") / "vocab.txt")


def write_fast_tokenizer(vocab: Path, directory: Path, **options) -> None:
    """What a newer hub upload has: transformers' tokenizer.json (and config), no vocab.txt."""
    transformers.BertTokenizerFast(vocab_file=str(vocab), **options).save_pretrained(directory)
    (directory / "vocab.txt").unlink()


def text_batch(tokenizer: tokenizers.Tokenizer, texts=TEXTS) -> dict[str, np.ndarray]:
    """``texts`` encoded by a bert_jax tokenizer, padded to LENGTH."""
    batch = {k: np.zeros((len(texts), LENGTH), np.int64) for k in make_batch(TINY)}
    for row, text in enumerate(texts):
        ids, type_ids = tokenizer.encode_pair(tokenizer.encode(text), None, LENGTH)
        batch["input_ids"][row, : len(ids)] = ids
        batch["token_type_ids"][row, : len(ids)] = type_ids
        batch["attention_mask"][row, : len(ids)] = 1
    return batch


def assert_same_ids(ours: tokenizers.Tokenizer, directory: Path, use_fast: bool = True) -> None:
    theirs = transformers.AutoTokenizer.from_pretrained(directory, use_fast=use_fast)
    assert theirs.is_fast == use_fast
    expected = [theirs.encode(t, add_special_tokens=False) for t in TEXTS]
    assert [ours.encode(t) for t in TEXTS] == expected
    assert ours.unk_id not in sum(expected, [])  # every character known: a real comparison


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_load_hf_reads_sharded_checkpoints(tiny, tmp_path, safe):
    tiny.model.save_pretrained(tmp_path, safe_serialization=safe, max_shard_size="40KB")
    index = tmp_path / ("model.safetensors.index.json" if safe else "pytorch_model.bin.index.json")
    shards = set(json.loads(index.read_text())["weight_map"].values())
    assert len(shards) > 2
    cfg, params = interop.load_hf(tmp_path)
    assert_outputs_close(jax_pretraining_outputs(cfg, params, tiny.batch), tiny.expected)

    (tmp_path / sorted(shards)[1]).unlink()
    with pytest.raises(FileNotFoundError, match=f"{re.escape(sorted(shards)[1])}.*every shard"):
        interop.load_hf(tmp_path)


class _RunsCode:
    """Unpickling this runs ``touch marker``: what a malicious pytorch_model.bin can hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_hf_refuses_a_pickle_that_runs_code(tiny, tmp_path):
    marker = tmp_path / "code_ran"
    state = dict(tiny.model.state_dict()) | {"cls.payload": _RunsCode(marker)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    shutil.copy(Path(tiny.path) / "config.json", tmp_path)
    bin_file = re.escape(str(tmp_path / "pytorch_model.bin"))
    with pytest.raises(ValueError, match=f"Refusing {bin_file}: .*could run code.*system"):
        interop.load_hf(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_load_hf_tokenizer_from_tokenizer_json_alone(tiny_vocab, tmp_path, lower):
    write_fast_tokenizer(tiny_vocab, tmp_path, do_lower_case=lower)
    tokenizer = interop.load_hf_tokenizer(tmp_path)
    assert tokenizer.lower_case == lower and tokenizer.max_chars_per_word == 100
    assert_same_ids(tokenizer, tmp_path)


def test_load_hf_tokenizer_follows_autotokenizer(tiny_vocab, tmp_path):
    """transformers rebuilds a BERT tokenizer.json's normaliser from tokenizer_config.json, with
    do_lower_case=True where unstated; so does bert_jax. The slow tokenizer reads vocab.txt."""
    write_fast_tokenizer(tiny_vocab, tmp_path, do_lower_case=False)
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))  # a model's
    tokenizer = interop.load_hf_tokenizer(tmp_path)
    assert (
        tokenizer.lower_case and not from_hf_tokenizer_json(tmp_path / "tokenizer.json").lower_case
    )
    assert_same_ids(tokenizer, tmp_path)

    slow = tmp_path / "slow"
    slow.mkdir()
    shutil.copy(tiny_vocab, slow)
    shutil.copy(tmp_path / "config.json", slow)
    (slow / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "strip_accents": False})
    )
    tokenizer = interop.load_hf_tokenizer(slow)
    assert tokenizer.lower_case and not tokenizer.strip_accents
    assert_same_ids(tokenizer, slow, use_fast=False)
    assert not interop.load_hf_tokenizer(slow, lower_case=False).lower_case

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty has no tokenizer.json.*--vocab"):
        interop.load_hf_tokenizer(tmp_path / "empty")


# --------------------------------------------------------------------- sentence-transformers


def sentence_transformers_pool(states, mask, modes, normalize) -> np.ndarray:
    """sentence-transformers' Pooling (cls, max, mean concatenated in that order) and Normalize,
    as its models/Pooling.py and Normalize.py compute them."""
    states, mask = torch.from_numpy(states), torch.from_numpy(mask).unsqueeze(-1).float()
    pooled = []
    if "cls" in modes:
        pooled.append(states[:, 0])
    if "max" in modes:
        pooled.append(states.masked_fill(mask == 0, -1e9).max(dim=1).values)
    if "mean" in modes:
        pooled.append((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
    out = torch.cat(pooled, dim=1)
    return (torch.nn.functional.normalize(out, p=2, dim=1) if normalize else out).numpy()


def write_sentence_transformers(
    root: Path,
    encoder: transformers.BertModel,
    vocab: Path,
    subfolder: str,
    modes: tuple[str, ...],
    normalize: bool,
    **pooling_fields: bool,
) -> Path:
    """A sentence-transformers directory as its save() writes one, without the library: the
    Transformer module in ``root / subfolder`` (tokenizer.json only), Pooling with ``modes``
    (and ``pooling_fields``), then Normalize if ``normalize``. Returns the module's folder."""
    model_dir = root / subfolder
    encoder.save_pretrained(model_dir)
    write_fast_tokenizer(vocab, model_dir, do_lower_case=True)
    (model_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": LENGTH, "do_lower_case": False})
    )
    kinds = [(subfolder, "Transformer"), ("1_Pooling", "Pooling")]
    kinds += [("2_Normalize", "Normalize")] if normalize else []
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(kinds)
    ]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    config = {
        "word_embedding_dimension": encoder.config.hidden_size,
        "pooling_mode_cls_token": "cls" in modes,
        "pooling_mode_mean_tokens": "mean" in modes,
        "pooling_mode_max_tokens": "max" in modes,
        "pooling_mode_mean_sqrt_len_tokens": False,
        **pooling_fields,
    }
    (root / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return model_dir


# The Transformer module's folder, the pooling modes, and whether Normalize follows.
ST_LAYOUTS = {
    "minilm": ("", ("mean",), True),  # all-MiniLM-L6-v2's
    "subfolder_cls": ("0_Transformer", ("cls",), False),
    "cls_max_mean": ("", ("cls", "max", "mean"), True),
}


@pytest.mark.parametrize("layout", list(ST_LAYOUTS))
def test_convert_sentence_transformers_keeps_the_pooling(tiny, tiny_vocab, tmp_path, layout):
    subfolder, modes, normalize = ST_LAYOUTS[layout]
    encoder = transformers.BertModel(tiny.model.config)
    encoder.load_state_dict(tiny.model.bert.state_dict())
    source = tmp_path / "st"
    model_dir = write_sentence_transformers(
        source, encoder, tiny_vocab, subfolder, modes, normalize
    )
    convert.main(["--from=hf", f"--input={source}", f"--output={tmp_path / 'out'}"])

    # What a fine-tuning run or a feature extractor finds in the converted directory.
    cfg, params, tokenizer_dir = checkpoints.load_init_checkpoint(str(tmp_path / "out"))
    tokenizer = tokenizers.load_tokenizer(tokenizer_dir)
    pooling = pretrained.load_pooling(tmp_path / "out")
    assert pooling == pretrained.Pooling(modes, normalize, LENGTH)
    assert_same_ids(tokenizer, model_dir)

    batch = text_batch(tokenizer)
    reference = transformers.AutoTokenizer.from_pretrained(model_dir)(
        TEXTS, padding="max_length", max_length=LENGTH, truncation=True, return_tensors="np"
    )
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"])
    with torch.no_grad():
        states = encoder.eval()(**torch_inputs(batch)).last_hidden_state.numpy()
    expected = sentence_transformers_pool(states, batch["attention_mask"], modes, normalize)
    ours = jax_pretraining_outputs(cfg, params, batch)["sequence_output"]
    embeddings = np.asarray(pooling(ours, batch["attention_mask"]))
    assert embeddings.shape == (len(TEXTS), len(modes) * cfg.hidden_size)
    np.testing.assert_allclose(embeddings, expected, atol=ATOL, rtol=0)


def test_sentence_transformers_modules_bert_jax_cannot_run_are_refused(tiny, tiny_vocab, tmp_path):
    encoder = transformers.BertModel(tiny.model.config)
    write_sentence_transformers(
        tmp_path, encoder, tiny_vocab, "", (), False, pooling_mode_weightedmean_tokens=True
    )
    with pytest.raises(ValueError, match="1_Pooling/config.json.*pooling_mode_weightedmean_tokens"):
        interop.load_sentence_pooling(tmp_path)

    modules = json.loads((tmp_path / "modules.json").read_text())
    modules.append(
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"modules.json has the modules .*'Dense'.*load_hf"):
        convert.main(["--from=hf", f"--input={tmp_path}", f"--output={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists()
    assert interop.load_sentence_pooling(tiny.path) is None


def test_pooling_file_errors_name_the_file(tmp_path):
    assert pretrained.load_pooling(tmp_path) is None
    (tmp_path / "pooling.json").write_text(json.dumps({"modes": ["mean", "cls"], "normalize": 1}))
    with pytest.raises(
        ValueError, match=r"pooling.json is not a valid pooling file.*in that order"
    ):
        pretrained.load_pooling(tmp_path)


def test_convert_needs_a_tokenizer(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json.*--vocab"):
        convert.main(["--from=hf", f"--input={tiny.path}", f"--output={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------- every head, both directions


def choice_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A [batch, choices, length] multiple-choice batch: the 3 rows as 3 choices, two orders."""
    return {k: np.stack([v, v[::-1]]) for k, v in batch.items()}


@dataclasses.dataclass(frozen=True)
class Head:
    """One class save_hf writes: bert_jax's module for it, made from (config, num_labels), the
    parameter groups that module reads, transformers' Auto class, and the transformers output
    fields to compare (bert_jax's outputs come in the same order)."""

    make: Callable[[BertConfig, int], nn.Module]
    groups: tuple[str, ...]
    auto_class: type
    fields: tuple[str, ...]


def _pretraining(cfg: BertConfig, num_labels: int) -> nn.Module:
    return BertForPreTraining(cfg)


_PT = ("mlm_head", "nsp_head")
HEADS = {
    "BertModel": Head(
        _pretraining, _PT, transformers.AutoModel, ("last_hidden_state", "pooler_output")
    ),
    "BertForPreTraining": Head(
        _pretraining,
        _PT,
        transformers.AutoModelForPreTraining,
        ("prediction_logits", "seq_relationship_logits"),
    ),
    "BertForMaskedLM": Head(_pretraining, _PT, transformers.AutoModelForMaskedLM, ("logits",)),
    "BertForSequenceClassification": Head(
        BertForSequenceClassification,
        ("classifier",),
        transformers.AutoModelForSequenceClassification,
        ("logits",),
    ),
    "BertForMultipleChoice": Head(
        lambda cfg, _: BertForMultipleChoice(cfg),
        ("classifier",),
        transformers.AutoModelForMultipleChoice,
        ("logits",),
    ),
    "BertForTokenClassification": Head(
        BertForTokenClassification,
        ("classifier",),
        transformers.AutoModelForTokenClassification,
        ("logits",),
    ),
    "BertForQuestionAnswering": Head(
        lambda cfg, _: BertForQuestionAnswering(cfg),
        ("qa_outputs",),
        transformers.AutoModelForQuestionAnswering,
        ("start_logits", "end_logits"),
    ),
}
# BertForPreTraining's outputs under the names transformers' classes give them.
_PRETRAINING_FIELDS = {
    "last_hidden_state": "sequence_output",
    "pooler_output": "pooled_output",
    "prediction_logits": "mlm_logits",
    "seq_relationship_logits": "nsp_logits",
    "logits": "mlm_logits",
}


def ours_as_hf(architecture: str, cfg: BertConfig, params, batch) -> tuple[np.ndarray, ...]:
    """bert_jax's outputs for ``architecture``, in the order of its Head's fields."""
    head = HEADS[architecture]
    num_labels = params["classifier"]["bias"].shape[0] if "classifier" in params else 0
    tree = {"bert": params["bert"]} | {g: params[g] for g in head.groups}
    if architecture == "BertForMultipleChoice":
        batch = choice_batch(batch)
    batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}
    out = jax_head_outputs(head.make(cfg, num_labels), tree, batch)
    if isinstance(out, PreTrainingOutput):
        return tuple(getattr(out, _PRETRAINING_FIELDS[f]) for f in head.fields)
    return out if isinstance(out, tuple) else (out,)


def hf_outputs(architecture: str, model, batch) -> tuple[np.ndarray, ...]:
    if architecture == "BertForMultipleChoice":
        batch = choice_batch(batch)
    with torch.no_grad():
        out = model.eval()(**torch_inputs(batch))
    return tuple(getattr(out, f).numpy() for f in HEADS[architecture].fields)


def assert_all_close(ours: tuple[np.ndarray, ...], reference: tuple[np.ndarray, ...]) -> None:
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("architecture", ["BertForMultipleChoice", "BertForTokenClassification"])
def test_load_hf_new_heads_with_and_without_prefix(tiny, tmp_path, architecture, caplog):
    hf_class = getattr(transformers, architecture)
    model = randomise_(hf_class(transformers.BertConfig(**TINY, num_labels=3)), 6)
    model.save_pretrained(tmp_path / "prefixed")
    # Some exports drop the base model's prefix ("bert.") from every key.
    tensors = load_file(tmp_path / "prefixed" / "model.safetensors")
    bare = {k.removeprefix("bert."): v for k, v in tensors.items()}
    (tmp_path / "bare").mkdir()
    save_file(bare, tmp_path / "bare" / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(tmp_path / "prefixed" / "config.json", tmp_path / "bare")

    with caplog.at_level(logging.WARNING, logger="bert_jax.interop"):
        cfg, params = interop.load_hf(tmp_path / "prefixed")
    has_pooler = architecture == "BertForMultipleChoice"  # transformers' token tagger has none
    assert ("pooler" in caplog.text) != has_pooler
    width = 1 if has_pooler else 3
    assert params["classifier"]["kernel"].shape == (cfg.hidden_size, width)
    assert_all_close(
        ours_as_hf(architecture, cfg, params, tiny.batch),
        hf_outputs(architecture, model, tiny.batch),
    )
    _, bare_params = interop.load_hf(tmp_path / "bare")
    assert_trees_equal(bare_params, params)


@pytest.fixture(scope="module")
def every_head(tiny):
    """Random bert_jax parameters for every group but the classifier (see head_params)."""
    cfg, _ = interop.load_hf(tiny.path)
    params = random_bert_jax_params(cfg, seed=7)
    rng = np.random.default_rng(8)
    params["qa_outputs"] = {
        "kernel": 0.1 * rng.standard_normal((cfg.hidden_size, 2)).astype(np.float32),
        "bias": 0.1 * rng.standard_normal(2).astype(np.float32),
    }
    return cfg, params


def head_params(every_head, architecture: str):
    """Every group of every head, with the classifier ``architecture`` wants (multiple choice:
    one output, else three labels): save_hf must pick its groups out."""
    cfg, params = every_head
    rng = np.random.default_rng(9)
    width = 1 if architecture == "BertForMultipleChoice" else 3
    classifier = {
        "kernel": 0.1 * rng.standard_normal((cfg.hidden_size, width)).astype(np.float32),
        "bias": 0.1 * rng.standard_normal(width).astype(np.float32),
    }
    return params | {"classifier": classifier}


@pytest.mark.parametrize("architecture", list(HEADS))
def test_save_hf_round_trips_through_auto_classes(every_head, tiny_vocab, tmp_path, architecture):
    """AutoTokenizer (fast and slow) gives bert_jax's ids, and AutoModel* loads every weight
    and gives bert_jax's outputs, for every head save_hf writes."""
    cfg, _ = every_head
    params = head_params(every_head, architecture)
    tokenizer = tokenizers.WordPiece(tiny_vocab, lower_case=architecture != "BertForMaskedLM")
    labelled = architecture in ("BertForSequenceClassification", "BertForTokenClassification")
    label_names = ["neg", "neutral", "pos"] if labelled else None
    interop.save_hf(
        cfg,
        params,
        tmp_path,
        tokenizer=tokenizer,
        architecture=architecture,
        label_names=label_names,
    )
    for use_fast in (True, False):
        assert_same_ids(tokenizer, tmp_path, use_fast)
    auto_class = HEADS[architecture].auto_class
    model, info = auto_class.from_pretrained(tmp_path, output_loading_info=True)
    assert type(model).__name__ == architecture
    assert not any(info.values()), info
    if labelled:
        assert model.config.id2label == dict(enumerate(label_names))
        assert model.config.label2id == {name: i for i, name in enumerate(label_names)}

    batch = text_batch(tokenizer)
    assert_all_close(
        ours_as_hf(architecture, cfg, params, batch), hf_outputs(architecture, model, batch)
    )


# transformers' BertForMaskedLM and BertForQuestionAnswering have no pooler.
ARCHITECTURES_WITH_POOLER = ("BertModel", "BertForPreTraining", "BertForSequenceClassification")


def test_save_hf_infers_the_architecture_from_the_heads(every_head, tmp_path):
    cfg, params = every_head
    params = head_params(every_head, "BertForSequenceClassification")
    trees = {
        "BertForPreTraining": ("mlm_head", "nsp_head"),
        "BertForMaskedLM": ("mlm_head",),
        "BertForSequenceClassification": ("classifier",),
        "BertForQuestionAnswering": ("qa_outputs",),
        "BertModel": (),
    }
    for architecture, groups in trees.items():
        out = tmp_path / architecture
        interop.save_hf(cfg, {g: params[g] for g in ("bert", *groups)}, out, tokenizer=None)
        assert json.loads((out / "config.json").read_text())["architectures"] == [architecture]
        keys = set(load_file(out / "model.safetensors"))
        pooler = (
            "pooler.dense.weight" if architecture == "BertModel" else "bert.pooler.dense.weight"
        )
        assert (pooler in keys) == (architecture in ARCHITECTURES_WITH_POOLER)
    # A bare BertModel is saved as BertModel.save_pretrained saves it: no "bert." prefix.
    assert "embeddings.word_embeddings.weight" in keys and "pooler.dense.bias" in keys


def test_save_hf_refusals_name_the_fix(every_head, tiny_vocab, tmp_path):
    cfg, _ = every_head
    classifier = "BertForSequenceClassification"
    params = head_params(every_head, classifier)
    cases = [
        (dict(architecture="BertForMultipleChoice"), "one output; params' classifier has 3"),
        (dict(architecture="BertForNextSentence"), "'BertForNextSentence'; choose one of"),
        (dict(architecture=classifier, label_names=["a", "b"]), "has 3 labels; give one distinct"),
        (dict(architecture=classifier, label_names=["a", "a", "b"]), "distinct"),
        (dict(architecture="BertForPreTraining", label_names=list("abc")), "label_names is for"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            interop.save_hf(cfg, params, tmp_path / "out", tokenizer=None, **kwargs)
    with pytest.raises(ValueError, match=r"BertForQuestionAnswering needs params\[.qa_outputs.\]"):
        interop.save_hf(
            cfg,
            {"bert": params["bert"]},
            tmp_path / "out",
            tokenizer=None,
            architecture="BertForQuestionAnswering",
        )
    spm = tokenizers.train_sentencepiece(TEXTS * 20, str(tmp_path / "spm"), vocab_size=80)
    with pytest.raises(ValueError, match="SentencePiece tokenizer .*spm.model"):
        interop.save_hf(cfg, params, tmp_path / "out", tokenizer=spm)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_causal_model_and_next_token_loss_equal_bert_lm_head_model(tmp_path):
    """transformers' BertLMHeadModel (is_decoder=True) loads as a causal model that gives its
    logits at every position and its next-token loss (labels shifted inside transformers); save_hf
    writes it back as a BertLMHeadModel with the same outputs."""
    from bert_jax.objectives import ltr_denominators, ltr_terms

    hf_config = transformers.BertConfig(**HF_CONFIGS["h64_gelu"], is_decoder=True)
    reference = randomise_(transformers.BertLMHeadModel(hf_config), 3)
    reference.save_pretrained(tmp_path / "hf")
    cfg, params = interop.load_hf(tmp_path / "hf")
    assert cfg.causal
    batch = make_batch(HF_CONFIGS["h64_gelu"])
    labels = np.where(batch["attention_mask"] > 0, batch["input_ids"], -100)
    with torch.no_grad():
        expected = reference(**torch_inputs(batch), labels=torch.from_numpy(labels))
    ours = jax_pretraining_outputs(cfg, params, batch)["mlm_logits"]
    np.testing.assert_allclose(ours, expected.logits.numpy(), atol=ATOL, rtol=0)
    jax_batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}
    sums = ltr_terms(BertForPreTraining(cfg), params, jax_batch, None, deterministic=True)
    loss = sums["lm_loss"] / ltr_denominators(jax_batch)["lm"]
    np.testing.assert_allclose(loss, expected.loss.item(), rtol=1e-5)

    interop.save_hf(cfg, params, tmp_path / "ours", tokenizer=None)
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == ["BertLMHeadModel"] and config["is_decoder"]
    exported = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        logits = exported(**torch_inputs(batch)).logits.numpy()
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="pooler reads the last token"):
        interop.save_hf(cfg, params, tmp_path / "pt", tokenizer=None, architecture="BertModel")
