"""Fine-tuning over any task family (``bert_jax.tasks``), on the same machinery as pretraining.

Reads top to bottom: family, initial checkpoint and tokenizer, data, model and state, step,
restore, loop with dev evaluation after every epoch (the best checkpoint by the family's main
metric is kept, with its dev prediction files), and test predictions from the best checkpoint.
Nothing here names a task: GLUE, SQuAD, ... differ only in their family.

Usage::

    from configs import glue, squad
    train_and_evaluate(glue.get_config("task=sst2,model=tiny"), "/tmp/sst2")
    train_and_evaluate(squad.get_config("version=2.0,model=tiny"), "/tmp/squad")
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from bert_jax import checkpoints, faults, optim, pretrained
from bert_jax.data import buckets, packing
from bert_jax.metrics import MetricWriter, Progress
from bert_jax.models.bert import BertConfig
from bert_jax.sharding import make_mesh, replicated, use_mesh
from bert_jax.tasks import Family, Features, get_family
from bert_jax.tokenizers import load_tokenizer
from bert_jax.train import (
    Batch,
    LossFn,
    Preemption,
    abstract_state,
    all_finite,
    check_batch_size,
    check_finite,
    create_train_state,
    global_batch,
    make_train_step,
    mean_metrics,
)

PREDICTIONS_DIR = "predictions"  # WORKDIR/predictions/<dev split>/: the best checkpoint's files


# ----------------------------------------------------------------------------------------------
# Data: features -> per-process batches.
# ----------------------------------------------------------------------------------------------
def local_rows(global_rows: np.ndarray) -> np.ndarray:
    """This process's share of a global batch's row indices (processes take contiguous blocks)."""
    per_process = len(global_rows) // jax.process_count()
    start = jax.process_index() * per_process
    return global_rows[start : start + per_process]


class TrainBatches:
    """This process's rows of the global batch of every step, cut to its bucket's length or
    packed.

    Each epoch is a fresh shuffle from ``(seed, epoch)`` drawn within length buckets
    (:func:`bert_jax.data.buckets.train_plan`; one bucket of ``max_seq_length`` when bucketing
    is off). With ``examples_per_row``, each batch of the unbucketed shuffle (the padded run's
    batches) is packed instead (:func:`bert_jax.data.packing.pack`) into as few rows of
    ``max_seq_length`` as hold it, rounded up to a multiple of ``row_multiple``. Being a
    function of the step alone, it makes resumption exact, mid-epoch included, without any
    iterator state.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, lengths: tuple[int, ...],
                 seed: int, examples_per_row: int = 0, row_multiple: int = 1):  # fmt: skip
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.max_seq_length = lengths[-1]
        self.buckets = (self.max_seq_length,) if examples_per_row else lengths
        self.examples_per_row, self.row_multiple = examples_per_row, row_multiple
        self.row_lengths = buckets.row_lengths(arrays)
        self.steps_per_epoch = len(self.row_lengths) // batch_size
        self._epoch_plan: tuple[int, buckets.Plan] | None = None

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._epoch_plan is None or self._epoch_plan[0] != epoch:
            plan = buckets.train_plan(
                self.row_lengths, self.buckets, self.batch_size, self.seed, epoch
            )
            self._epoch_plan = (epoch, plan)
        rows, length = self._epoch_plan[1][i]
        if self.examples_per_row:
            batch = {k: v[rows] for k, v in self.arrays.items()}
            packed, _ = packing.pack(batch, self.max_seq_length, self.examples_per_row,
                                     self.row_multiple)  # fmt: skip
            mine = local_rows(np.arange(len(packed["input_ids"])))
            return {k: v[mine] for k, v in packed.items()}
        rows = local_rows(rows)
        return buckets.cut({k: v[rows] for k, v in self.arrays.items()}, length,
                           self.max_seq_length)  # fmt: skip


def predict(
    predict_fn: Callable,
    params: Any,
    arrays: dict[str, np.ndarray],
    batch_size: int,
    mesh: Mesh,
    lengths: tuple[int, ...] | None = None,
    token_outputs: tuple[str, ...] = (),
) -> Any:
    """Model outputs (an array or a dict of them) for every row exactly once, in row order, on any
    number of processes.

    With bucket ``lengths``, rows are batched by length and each batch is cut to its bucket
    (:func:`bert_jax.data.buckets.eval_plan`); the outputs named in ``token_outputs`` (tokens
    on axis 1) come back padded to ``max_seq_length`` with -inf, the logit of a position that was
    not computed. A short last batch is filled with all-zero rows (weight 0), dropped afterwards;
    every process gets the outputs of the whole global batch.
    """
    max_seq_length = arrays["input_ids"].shape[-1]
    n = len(arrays["input_ids"])
    if lengths is None or len(lengths) == 1:
        plan = [(np.arange(i, min(i + batch_size, n)), max_seq_length)
                for i in range(0, n, batch_size)]  # fmt: skip
    else:
        plan = buckets.eval_plan(buckets.row_lengths(arrays), lengths, batch_size)

    def pad_tokens(key, x):
        if key not in token_outputs or x.shape[1] == max_seq_length:
            return x
        widths = [(0, 0), (0, max_seq_length - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, widths, constant_values=-np.inf)

    results = None
    for rows, length in plan:
        filled = local_rows(np.concatenate([rows, np.full(batch_size - len(rows), -1)]))
        real = filled >= 0
        local = {
            k: np.where(real.reshape(-1, *[1] * (v.ndim - 1)), v[filled], 0).astype(v.dtype)
            for k, v in arrays.items()
        }
        local = buckets.cut(local, length, max_seq_length)
        out = jax.device_get(predict_fn(params, global_batch(local, mesh)))
        out = jax.tree_util.tree_map_with_path(
            lambda path, x: pad_tokens(getattr(path[0], "key", None) if path else None, x), out
        )
        if results is None:
            results = jax.tree.map(lambda x: np.empty((n, *x.shape[1:]), x.dtype), out)
        for result, x in zip(jax.tree.leaves(results), jax.tree.leaves(out), strict=True):
            result[rows] = x[: len(rows)]
    return results


def _with_weights(features: Features) -> dict[str, np.ndarray]:
    """The rows the step sees: the family's arrays and a weight of 1 (0 marks padding rows)."""
    return {**features.arrays, "weights": np.ones((len(features),), np.float32)}


# ----------------------------------------------------------------------------------------------
# The objective: the family's per-row losses, averaged over the batch's real rows.
# ----------------------------------------------------------------------------------------------
def make_loss_fn(family: Family, model) -> LossFn:
    def loss_fn(params, batch, rng, denominators):
        losses, row_metrics = family.loss(model, params, batch, rng)
        w, n = batch["weights"], denominators["examples"]
        # jnp.where, not a product: a padding row's output must not reach the sum even as NaN.
        metrics = {k: jnp.where(w > 0, v * w, 0.0).sum() / n for k, v in row_metrics.items()}
        return jnp.where(w > 0, losses * w, 0.0).sum() / n, metrics

    return loss_fn


def example_denominators(batch: Batch) -> dict[str, jax.Array]:
    return {"examples": jnp.maximum(batch["weights"].sum(), 1.0)}


# ----------------------------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------------------------
def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
    """Fine-tunes the family of ``config`` in ``workdir`` (resuming if it holds this run).

    Leaves ``metrics.jsonl`` (training and ``dev/...`` metrics every epoch), the best parameters
    in ``best/`` with the dev prediction files of that evaluation in ``predictions/<split>/``,
    test-server files (GLUE: ``submission/<Task>.tsv``) and ``results.json`` (best dev metrics).
    The run holds ``workdir`` throughout: a second run started on it refuses (``bert_jax.faults``).
    """
    with faults.hold_workdir(workdir):
        return _train_and_evaluate(config, workdir)


def resolve_options(config: mlc.ConfigDict, family: Family) -> mlc.ConfigDict:
    """A copy of ``config`` with the options that follow from others (left None) set, once,
    after the overrides, each logged; ``config.json`` records the resolved values.

    Example::

        config = resolve_options(ner_config.get_config("model=tiny"), family)
        config.bucket_by_length   # False: document windows are full
    """
    config = copy.deepcopy(config)
    if config.bucket_by_length is None:
        config.bucket_by_length = family.bucket_by_length
        logging.info("bucket_by_length=%s (as %s's options call for; set it to override).",
                     config.bucket_by_length, family.name)  # fmt: skip
    return config


def _train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
    # --- Family and mesh.
    family = get_family(config)
    config = resolve_options(config, family)
    if config.pack_examples and not getattr(family, "packs", False):
        raise ValueError(
            f"config.pack_examples: the {family.name} family does not pack its examples (only "
            "classification does); set --config.pack_examples=False (its batches are still "
            "length-bucketed with bucket_by_length)."
        )
    mesh = make_mesh(config.mesh_shape)
    rules = config.sharding_rules
    checkpoints.check_compatible_workdir(workdir, config)
    finished = checkpoints.read_results(workdir)
    if finished is not None:  # its prediction files stay as they are
        logging.info("%s already holds a finished run: %s", workdir, finished)
        return finished

    # --- Initial checkpoint and its tokenizer.
    if not config.init_checkpoint:
        raise ValueError(
            "Fine-tuning starts from a pretrained model: set --config.init_checkpoint to a "
            "converted checkpoint (python -m bert_jax.convert) or a pretraining workdir."
        )
    ckpt_model, init_params, tokenizer_dir = checkpoints.load_init_checkpoint(
        config.init_checkpoint
    )
    # The architecture comes from the checkpoint; how to run it (dropout, dtype, ...) from here.
    cfg = dataclasses.replace(
        ckpt_model, **{k: config.model[k] for k in checkpoints.RUNTIME_FIELDS}
    )
    tokenizer = load_tokenizer(tokenizer_dir)
    checkpoints.keep_tokenizer(tokenizer, workdir)

    # --- Data: the family reads and featurizes its splits.
    check_batch_size("batch_size", config.batch_size, mesh, config.grad_accum_steps)
    check_batch_size("eval_batch_size", config.eval_batch_size, mesh)
    with faults.files_read() as data_files:  # for the fingerprint a checkpoint records
        splits = family.load(config, workdir)
    empty = [name for name, split in splits.items() if len(split) == 0]
    if empty:
        raise ValueError(f"{family.name}: the {empty} split(s) hold no examples; check the data.")
    features = {
        name: family.featurize(name, split, tokenizer, config) for name, split in splits.items()
    }
    arrays = {name: _with_weights(f) for name, f in features.items()}
    # Batches are cut to the shortest of these lengths that holds their rows.
    lengths = (config.max_seq_length,)
    if config.bucket_by_length:
        lengths = buckets.bucket_lengths(config.length_buckets, config.max_seq_length)
    token_outputs = getattr(family, "token_outputs", ())

    # --- Model, optimizer and sharded state.
    model = family.model(cfg)
    predict_batch = make_predict_fn(family, model, mesh, rules)

    def predict_split(params, split: str):
        return predict(predict_batch, params, arrays[split], config.eval_batch_size, mesh,
                       lengths, token_outputs)  # fmt: skip

    if family.predicted_by:
        return _predict_only(family, init_params, predict_split, features, splits, mesh, workdir)
    # A resumed run must train on the data its checkpoint was trained on.
    ckpt = checkpoints.Checkpointer(
        workdir,
        config.max_checkpoints_to_keep,
        keep_going_on_save_error=config.keep_going_on_save_error,
        data_fingerprint=faults.finetune_fingerprint(features, data_files, workdir),
    )
    step = ckpt.latest_step() or 0
    ckpt.check_same_data(step, config.allow_data_change)
    # Packed rows: an equal share for every data-parallel device of every micro-batch. Packing
    # is used where it computes fewer tokens than the buckets (short examples for the length).
    data_parallel = mesh.shape["data"] * mesh.shape["fsdp"] * config.grad_accum_steps
    row_multiple = math.lcm(data_parallel, jax.process_count())
    per_row = config.examples_per_row if config.pack_examples else 0
    if per_row:
        train_lengths = buckets.row_lengths(arrays["train"])
        ratio = packing.token_ratio(
            train_lengths, lengths, config.batch_size, per_row, row_multiple, config.seed
        )
        per_row = per_row if ratio < config.pack_if_token_ratio_below else 0
        logging.info("Packed rows compute %.2fx the tokens of bucketed rows: %s.", ratio,
                     "packing" if per_row else "bucketing")  # fmt: skip
    train_batches = TrainBatches(arrays["train"], config.batch_size, lengths, config.seed,
                                 per_row, row_multiple)  # fmt: skip
    steps_per_epoch = train_batches.steps_per_epoch
    if steps_per_epoch == 0:
        raise ValueError(
            f"{family.name} has {len(features['train'])} training rows, fewer than one batch."
        )
    total_steps = config.total_steps
    if total_steps < 0:
        total_steps = math.ceil(config.num_epochs * steps_per_epoch)
    eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
    schedule, tx = optim.from_config(
        config, total_steps, round(config.warmup_fraction * total_steps)
    )
    # Parameter groups the family keeps fixed (the feature-based tagger's encoder).
    tx = optim.freeze(tx, getattr(family, "frozen", ()))
    dummy = jnp.zeros((1, config.max_seq_length), jnp.int32)
    state, shardings = create_train_state(
        lambda rng: model.init(rng, dummy)["params"], tx, mesh, rules, config.seed
    )

    # --- Step.
    train_step = make_train_step(
        make_loss_fn(family, model),
        example_denominators,
        tx,
        shardings,
        mesh,
        rules,
        config.grad_accum_steps,
    )

    # --- Restore, or start from the initial checkpoint.
    if step:
        state = ckpt.restore(step, abstract_state(shardings, state))
    else:
        params = checkpoints.merge_params(init_params, state.params, config.init_checkpoint)
        state = state.replace(params=jax.device_put(params, shardings.params))
    best = _read_best(workdir)

    def evaluate_dev(params) -> tuple[dict[str, float], dict[str, Any]]:
        dev, files = {}, {}
        for split in family.dev_splits:
            outputs = predict_split(params, split)
            scores, files[split] = family.evaluate(split, splits[split], features[split], outputs)
            dev.update(scores)
        return dev, files

    # --- Loop: train, evaluate on dev after every epoch, keep the best.
    writer = MetricWriter(workdir)
    progress = Progress(total_steps, step)
    preemption = Preemption()
    pending = []
    try:
        while step < total_steps:
            state, metrics = train_step(state, global_batch(train_batches(step), mesh))
            pending.append(metrics)
            step += 1
            if step % config.log_every_steps == 0 or step == total_steps:
                logged = mean_metrics(pending)
                check_finite(logged, step)
                logged["learning_rate"] = float(schedule(step - 1))
                writer.write(step, logged)
                progress.update(step, logged["loss"])
                logging.info("step %d/%d: loss %.4f", step, total_steps, logged["loss"])
                pending = []
            stop = preemption.requested or ckpt.reached_preemption(step)
            if step % eval_every == 0 or step == total_steps:
                check_finite({"parameters": float(all_finite(state.params))}, step)
                dev, files = evaluate_dev(state.params)
                writer.write(step, dev)
                logging.info("step %d %s", step, dev)
                if best is None or dev[family.main_metric] > best[family.main_metric]:
                    best = {**dev, "step": step}
                    _save_best(workdir, cfg, state.params, best, files)
                ckpt.save(step, state, force=True)
            elif stop:
                check_finite({"parameters": float(all_finite(state.params))}, step)
                ckpt.save(step, state, force=True)
            if stop:
                logging.warning("Stopped at step %d on preemption; re-run to resume.", step)
                return {}
    finally:  # an in-flight async save completes even when the run fails
        preemption.close()
        ckpt.close()
        writer.close()

    # --- Test predictions from the best checkpoint.
    if config.predict_test and family.test_splits:
        _, best_params = pretrained.load(os.path.join(workdir, checkpoints.BEST_DIR))
        best_params = jax.device_put(best_params, shardings.params)
        _write_test_predictions(family, best_params, predict_split, features, splits, workdir)
    results = {f"best/{k.removeprefix('dev/')}": v for k, v in best.items() if k != "step"}
    results["best_step"] = best["step"]
    checkpoints.write_results(workdir, results)
    return results


def make_predict_fn(family: Family, model, mesh, rules):
    """predict_fn(params, batch) -> the family's float32 outputs of the whole global batch, on
    every process."""
    jitted = jax.jit(
        lambda params, batch: family.outputs(model, params, batch),
        out_shardings=replicated(mesh),
    )

    def predict_fn(params, batch):
        with use_mesh(mesh, rules):
            return jitted(params, batch)

    return predict_fn


def _write_test_predictions(family, params, predict_split, features, splits, workdir):
    for split in family.test_splits:
        if split not in features:
            continue
        outputs = predict_split(params, split)
        if jax.process_index() == 0:
            for path in family.write_test(split, splits[split], features[split], outputs, workdir):
                logging.info("Wrote %s", path)


def _predict_only(family, params, predict_split, features, splits, mesh, workdir):
    """A test-only split (GLUE's AX) predicted by a fine-tuned model (``init_checkpoint``)."""
    if "classifier" not in params:
        raise ValueError(
            f"{family.name} predicts with a fine-tuned {family.predicted_by} model: set "
            f"--config.init_checkpoint to a {family.predicted_by} fine-tuning workdir."
        )
    params = jax.device_put(params, replicated(mesh))
    _write_test_predictions(family, params, predict_split, features, splits, workdir)
    checkpoints.write_results(workdir, {"predicted": sum(len(f) for f in features.values())})
    return {}


def _read_best(workdir: str) -> dict | None:
    path = os.path.join(workdir, "best.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _save_best(workdir: str, cfg: BertConfig, params, best: dict, files: dict) -> None:
    """Replaces ``WORKDIR/best`` with these parameters and ``WORKDIR/predictions`` with their dev
    prediction files (``files``: split -> writer into a directory): written aside, swapped in.

    Every process calls it (each saves its shards of the parameters); process 0 moves files.
    """
    final = os.path.join(workdir, checkpoints.BEST_DIR)
    staging = final + ".new"
    if jax.process_index() == 0:
        shutil.rmtree(staging, ignore_errors=True)
    pretrained.save(staging, cfg, params, os.path.join(workdir, checkpoints.TOKENIZER_DIR))
    if jax.process_index() == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        _replace_predictions(os.path.join(workdir, PREDICTIONS_DIR), files)
        with open(os.path.join(workdir, "best.json.tmp"), "w") as f:
            json.dump(best, f, indent=2)
        os.replace(os.path.join(workdir, "best.json.tmp"), os.path.join(workdir, "best.json"))
    multihost_utils.sync_global_devices("best checkpoint replaced")


def _replace_predictions(directory: str, files: dict[str, Callable[[str], object] | None]) -> None:
    """``directory/<split>/`` from each split's writer, swapped in whole."""
    if not any(files.values()):
        return
    staging = directory + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    for split, write in files.items():
        if write is not None:
            write(os.path.join(staging, split))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
