"""Initial-checkpoint checks: a checkpoint of another model or vocabulary is refused by name."""

import dataclasses
import json
import pathlib
import sys

import numpy as np
import pytest

from bert_jax import checkpoints
from bert_jax.finetune import resolve_options
from bert_jax.models.bert import BertConfig
from bert_jax.tasks import get_family
from bert_jax.tokenizers import WordPiece

BASE = BertConfig.from_name("tiny", vocab_size=40)


def test_another_architecture_is_refused_and_runtime_options_are_free():
    tanh = dataclasses.replace(BASE, hidden_act="gelu_tanh")
    with pytest.raises(ValueError, match="hidden_act: 'gelu_tanh' in the checkpoint, 'gelu'"):
        checkpoints.check_same_model(tanh, BASE, "ckpt")
    runtime = dataclasses.replace(BASE, dtype="bfloat16", remat="full", hidden_dropout=0.0)
    checkpoints.check_same_model(runtime, BASE, "ckpt")


def _vocab(tmp_path, name, words):
    path = tmp_path / name
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return WordPiece(str(path))


def test_another_vocabulary_of_the_same_size_is_refused(tmp_path):
    ours = _vocab(tmp_path, "a.txt", ["cat", "dog"])
    _vocab(tmp_path, "b.txt", ["dog", "cat"]).save(str(tmp_path / "ckpt_tokenizer"))
    with pytest.raises(ValueError, match="another vocabulary"):
        checkpoints.check_same_tokenizer(str(tmp_path / "ckpt_tokenizer"), ours, "ckpt")
    ours.save(str(tmp_path / "same"))
    checkpoints.check_same_tokenizer(str(tmp_path / "same"), ours, "ckpt")


def test_merge_params_takes_loaded_values_in_the_models_dtype_and_layout():
    fresh = {  # scan_layers: layers 0 and 1 stacked, the last one apart
        "bert": {
            "layers": {"layer": {"w": np.zeros((2, 3), np.float16)}},
            "layer_2": {"w": np.zeros(3, np.float16)},
        },
        "head": {"b": np.ones(2)},
    }
    loaded = {"bert": {f"layer_{i}": {"w": np.full(3, i + 1.5)} for i in range(3)}}
    merged = checkpoints.merge_params(loaded, fresh, "ckpt")
    w = merged["bert"]["layers"]["layer"]["w"]
    assert w.dtype == np.float16 and w.tolist() == [[1.5] * 3, [2.5] * 3]
    assert merged["bert"]["layer_2"]["w"].tolist() == [3.5] * 3
    assert merged["head"]["b"].tolist() == [1.0, 1.0]  # missing from the checkpoint: fresh


def test_a_config_from_before_a_field_existed_resumes_with_the_value_it_ran_with(tmp_path):
    """A workdir's config.json written before ``bucket_by_length`` existed ran padded batches:
    it resumes with bucket_by_length=False, and the new default (True) is named as a change."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
    from configs import glue as glue_config

    config = glue_config.get_config("task=sst2,model=tiny")
    config = resolve_options(config, get_family(config))  # as fine-tuning writes config.json
    saved = checkpoints.config_to_dict(config)
    for key in ("bucket_by_length", "length_buckets"):
        del saved[key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"bucket_by_length: False -> True"):
        checkpoints.check_compatible_workdir(str(tmp_path), config)
    with config.unlocked():
        config.bucket_by_length = False
    checkpoints.check_compatible_workdir(str(tmp_path), config)
