"""Building blocks shared by the experiment configs in ``configs/``.

A config file is a small program: ``get_config("model=base,task=mnli")`` parses its argument with
:func:`parse_arg`, starts from :func:`base_config` (the fields every experiment has) and sets what
is particular to it. Configs are locked and typed, so a mistyped override fails at once and
ml_collections names the closest key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections as mlc
from absl import flags
from ml_collections import config_flags

from bert_jax.models.bert import VARIANTS, BertConfig
from bert_jax.sharding import DEFAULT_RULES


def parse_arg(arg: str | None, **defaults: Any) -> mlc.ConfigDict:
    """Parses ``"key=value,key=value"`` against ``defaults``; values take the default's type.

    >>> parse_arg("model=tiny,steps=5", model="base", steps=100).steps
    5
    """
    values = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Config argument {item!r} is not of the form key=value.")
        if key not in defaults:
            raise ValueError(
                f"Unknown config argument {key!r}; this config takes {sorted(defaults)}."
            )
        kind = type(defaults[key])
        values[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return mlc.ConfigDict(values)


def model_config(name: str, **overrides: Any) -> mlc.ConfigDict:
    """Every BertConfig field of a named variant, so any of them can be overridden by flag."""
    if name not in VARIANTS:
        raise ValueError(f"Unknown model {name!r}; choose one of {list(VARIANTS)}.")
    fields = BertConfig.from_name(name, **overrides).to_dict()
    # attention_impl may be None: declare its type so that overrides are still checked.
    fields["attention_impl"] = mlc.FieldReference(fields["attention_impl"], field_type=str)
    return mlc.ConfigDict(fields)


def to_bert_config(model: Mapping[str, Any]) -> BertConfig:
    """The frozen model hyperparameters from a config's ``model`` field."""
    return BertConfig.from_dict(dict(model))


def base_config() -> mlc.ConfigDict:
    """Fields every experiment reads: seed, steps, optimizer, mesh, logging, checkpointing."""
    c = mlc.ConfigDict()
    c.experiment = ""  # "pretrain" or "finetune": selects the train_and_evaluate function
    c.seed = 0
    c.model_name = "base"
    c.model = model_config("base")
    c.total_steps = 1000
    c.batch_size = 256  # global, over all processes and devices
    c.grad_accum_steps = 1  # micro-batches of batch_size / grad_accum_steps inside one step

    c.optimizer = "bert_adam"  # bert_adam | adamw | lamb
    c.learning_rate = 1e-4
    c.schedule = (
        "bert"  # bert (warmup replaces the start of a linear decay) | polynomial | constant
    )
    c.warmup_steps = 0
    c.end_learning_rate = 0.0
    c.schedule_power = 1.0
    c.weight_decay = 0.01
    c.b1 = 0.9
    c.b2 = 0.999
    c.eps = mlc.FieldReference(None, field_type=float)  # None: the optimizer's own default
    c.clip_norm = 1.0  # global-norm clipping; 0 disables it

    c.mesh_shape = (-1, 1, 1)  # (data, fsdp, tensor); one -1 takes the remaining devices
    c.sharding_rules = DEFAULT_RULES

    c.log_every_steps = 100
    c.eval_every_steps = 1000
    c.checkpoint_every_steps = 1000
    c.max_checkpoints_to_keep = 3
    c.init_checkpoint = mlc.FieldReference(None, field_type=str)
    # Faults (bert_jax.faults): resume on data other than the checkpoint's (the change is recorded
    # in WORKDIR/data_changes.jsonl); train on when a checkpoint cannot be saved, saving again at
    # the next checkpoint step, rather than stop.
    c.allow_data_change = False
    c.keep_going_on_save_error = False
    return c


def finetune_config(family: str, model: str) -> mlc.ConfigDict:
    """Fields the fine-tuning loop reads, for every task family (``bert_jax.tasks``), set to the
    paper's GLUE protocol; a family's config file changes what its recipe differs in."""
    c = base_config()
    c.experiment = "finetune"
    c.family = family  # classification | span: the task family (bert_jax.tasks.get_family)
    c.model_name = model
    # The architecture comes from init_checkpoint; dropout, dtype and attention_impl from here.
    c.model = model_config(model)
    c.batch_size = 32
    c.num_epochs = 3.0
    c.total_steps = -1  # -1: num_epochs over the training set
    c.learning_rate = 2e-5
    c.warmup_fraction = 0.1
    c.optimizer = "bert_adam"
    c.schedule = "bert"
    c.max_seq_length = 128
    # Batches cut to the shortest of a few lengths that holds their rows (bert_jax.data.buckets):
    # the same function as padding every row to max_seq_length, compiled once per length.
    # None: as the family's options call for (its ``bucket_by_length``; e.g. NER buckets with
    # context=sentence, not with full document windows), resolved after the overrides and logged.
    c.bucket_by_length = mlc.FieldReference(None, field_type=bool)
    c.length_buckets = ()  # () = eighths of max_seq_length (bert_jax.data.buckets)
    # Training batches packed: several examples side by side per row (bert_jax.data.packing),
    # at most examples_per_row each; the same function as one example per row. On where the
    # family packs (classification), and used where the packed rows compute under
    # pack_if_token_ratio_below of the bucketed rows' tokens (packing.token_ratio; inf: always).
    # Evaluation stays length-bucketed (it sorts rows by length: little padding anyway).
    c.pack_examples = family == "classification"
    c.examples_per_row = 16
    c.pack_if_token_ratio_below = 0.9
    c.eval_every_epochs = 1.0  # dev evaluation (and a checkpoint) after every epoch
    c.eval_batch_size = 64
    c.predict_test = True  # predict the test splits with the best dev checkpoint
    c.data_dir = mlc.FieldReference(None, field_type=str)
    c.log_every_steps = 50
    return c


def load_config(argv: Sequence[str]) -> mlc.ConfigDict:
    """The locked config that ``bert_jax.main`` builds from the same arguments.

    >>> load_config(["--config=configs/pretrain.py:model=tiny", "--config.seed=3"]).seed
    3
    """
    argv = ["bert_jax", *argv]
    flag_values = flags.FlagValues()
    # Override flags (--config.FIELD=...) are found in argv when the config flag is defined.
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv
    )
    flag_values(argv)
    return flag_values.config
