"""GLUE fine-tuning with the paper's protocol, on the same machinery as pretraining.

Reads top to bottom: task, initial checkpoint and tokenizer, data, model and state, step, restore,
loop with dev evaluation after every epoch (the best checkpoint by the task's metric is kept), and
test predictions in the GLUE server's format.

Usage::

    from configs import glue
    train_and_evaluate(glue.get_config("task=sst2,model=tiny"), "/tmp/sst2")
"""

from __future__ import annotations

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
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from bert_jax import checkpoints, optim, pretrained
from bert_jax.data.glue import GlueSplit, load_tfds_split, read_split, write_synthetic_glue
from bert_jax.glue import Task, compute_metrics, get_task, write_submission
from bert_jax.metrics import MetricWriter, Progress
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForSequenceClassification
from bert_jax.sharding import make_mesh, replicated, use_mesh
from bert_jax.tokenizers import Tokenizer, load_tokenizer
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


# ----------------------------------------------------------------------------------------------
# Data: GLUE rows -> fixed-length features -> per-process batches.
# ----------------------------------------------------------------------------------------------
def featurize(split: GlueSplit, tokenizer: Tokenizer, max_length: int) -> dict[str, np.ndarray]:
    """``[CLS] a [SEP] b [SEP]`` ids (longer side truncated first), padded to ``max_length``."""
    n = len(split)
    out = {
        "input_ids": np.zeros((n, max_length), np.int32),
        "token_type_ids": np.zeros((n, max_length), np.int32),
        "attention_mask": np.zeros((n, max_length), np.int32),
        "weights": np.ones((n,), np.float32),
    }
    for i in range(n):
        a = tokenizer.encode(split.texts_a[i])
        b = tokenizer.encode(split.texts_b[i]) if split.texts_b is not None else None
        ids, types = tokenizer.encode_pair(a, b, max_length)
        out["input_ids"][i, : len(ids)] = ids
        out["token_type_ids"][i, : len(ids)] = types
        out["attention_mask"][i, : len(ids)] = 1
    if split.labels is not None:
        out["labels"] = np.asarray(split.labels)
    return out


def local_rows(global_rows: np.ndarray) -> np.ndarray:
    """This process's share of a global batch's row indices (processes take contiguous blocks)."""
    per_process = len(global_rows) // jax.process_count()
    start = jax.process_index() * per_process
    return global_rows[start : start + per_process]


def train_batch(features, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """The local rows of the global batch of ``step``: a fresh shuffle every epoch, from the seed.

    Being a function of the step alone, it makes resumption exact without any iterator state.
    """
    n = len(features["input_ids"])
    steps_per_epoch = n // batch_size
    epoch, i = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    rows = local_rows(order[i * batch_size : (i + 1) * batch_size])
    return {k: v[rows] for k, v in features.items()}


def predict(
    predict_fn: Callable, params: Any, features: dict[str, np.ndarray], batch_size: int, mesh: Mesh
) -> np.ndarray:
    """Model outputs for every example exactly once, on one process or many.

    The last partial batch is padded with zero-weight rows, which are dropped afterwards; every
    process gets the outputs of the whole global batch.
    """
    n = len(features["input_ids"])
    padded = math.ceil(n / batch_size) * batch_size
    outputs = []
    for start in range(0, padded, batch_size):
        rows = local_rows(np.arange(start, start + batch_size))
        local = {
            k: np.where(
                (rows < n).reshape(-1, *[1] * (v.ndim - 1)), v[np.minimum(rows, n - 1)], 0
            ).astype(v.dtype)
            for k, v in features.items()
            if k != "labels"
        }
        outputs.append(np.asarray(jax.device_get(predict_fn(params, global_batch(local, mesh)))))
    return np.concatenate(outputs)[:n]


def load_splits(config: mlc.ConfigDict, task: Task, workdir: str) -> dict[str, GlueSplit]:
    """train, the dev splits and (when predicting) the test splits of ``task``."""
    wanted = ["train", *task.dev_splits] + (list(task.test_splits) if config.predict_test else [])
    if task.predicted_by:  # AX: test only
        wanted = list(task.test_splits)
    if config.data_source == "tfds":
        return {s: load_tfds_split(task.name, s, data_dir=config.data_dir) for s in wanted}
    if config.data_source == "synthetic":
        data_dir = os.path.join(workdir, "glue_data")
        if jax.process_index() == 0 and not os.path.exists(data_dir):
            write_synthetic_glue(
                data_dir + ".tmp", seed=config.seed, num_train=config.synthetic_train_examples
            )
            os.replace(data_dir + ".tmp", data_dir)
        multihost_utils.sync_global_devices("synthetic GLUE written")
    elif config.data_source == "tsv":
        if not config.data_dir:
            raise ValueError(
                "No GLUE data: set --config.data_dir to the standard GLUE folder, or "
                "--config.data_source=tfds / synthetic."
            )
        data_dir = config.data_dir
    else:
        raise ValueError(
            f"Unknown config.data_source {config.data_source!r}: use tsv, tfds or synthetic."
        )
    return {s: read_split(data_dir, task.name, s) for s in wanted}


# ----------------------------------------------------------------------------------------------
# The objective: cross-entropy, or mean squared error for regression (STS-B).
# ----------------------------------------------------------------------------------------------
def make_loss_fn(model: BertForSequenceClassification, regression: bool) -> LossFn:
    def loss_fn(params, batch, rng, denominators):
        logits = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            deterministic=False,
            rngs={"dropout": rng},
        ).astype(jnp.float32)
        w = batch["weights"]
        if regression:
            losses = jnp.square(logits[:, 0] - batch["labels"])
            metrics = {}
        else:
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
            correct = (logits.argmax(-1) == batch["labels"]) * w
            metrics = {"accuracy": correct.sum() / denominators["examples"]}
        # jnp.where, not a product: a padding row's output must not reach the sum even as NaN.
        return jnp.where(w > 0, losses * w, 0.0).sum() / denominators["examples"], metrics

    return loss_fn


def example_denominators(batch: Batch) -> dict[str, jax.Array]:
    return {"examples": jnp.maximum(batch["weights"].sum(), 1.0)}


def to_predictions(outputs: np.ndarray, task: Task) -> np.ndarray:
    return outputs[:, 0] if task.is_regression else outputs.argmax(-1)


# ----------------------------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------------------------
def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
    """Fine-tunes on ``config.task`` in ``workdir`` (resuming if it holds this run).

    Leaves ``metrics.jsonl`` (training and ``dev/<split>/<metric>``), the best parameters in
    ``best/``, ``submission/<Task>.tsv`` test predictions and ``results.json`` (best dev metrics).
    """
    # --- Task and mesh.
    task = get_task(config.task)
    mesh = make_mesh(config.mesh_shape)
    rules = config.sharding_rules
    checkpoints.check_compatible_workdir(workdir, config)
    finished = checkpoints.read_results(workdir)
    if finished is not None:  # its submission files stay as they are
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

    # --- Data.
    check_batch_size("batch_size", config.batch_size, mesh, config.grad_accum_steps)
    check_batch_size("eval_batch_size", config.eval_batch_size, mesh)
    splits = load_splits(config, task, workdir)
    empty = [name for name, split in splits.items() if len(split) == 0]
    if empty:
        raise ValueError(f"{task.name}: the {empty} split(s) hold no examples; check the data.")
    for name, split in splits.items():
        if split.skipped:
            logging.warning("%s/%s: skipped %d malformed rows", task.name, name, len(split.skipped))
    features = {name: featurize(s, tokenizer, config.max_seq_length) for name, s in splits.items()}

    # --- Model, optimizer and sharded state.
    model = BertForSequenceClassification(cfg, task.num_labels)
    if task.predicted_by:
        return _predict_only(config, task, model, init_params, features, splits, mesh, workdir)
    n_train = len(splits["train"])
    steps_per_epoch = n_train // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{task.name} has {n_train} training rows, fewer than one batch.")
    total_steps = config.total_steps
    if total_steps < 0:
        total_steps = math.ceil(config.num_epochs * steps_per_epoch)
    eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
    schedule, tx = optim.from_config(
        config, total_steps, round(config.warmup_fraction * total_steps)
    )
    dummy = jnp.zeros((1, config.max_seq_length), jnp.int32)
    state, shardings = create_train_state(
        lambda rng: model.init(rng, dummy)["params"], tx, mesh, rules, config.seed
    )

    # --- Steps.
    train_step = make_train_step(
        make_loss_fn(model, task.is_regression),
        example_denominators,
        tx,
        shardings,
        mesh,
        rules,
        config.grad_accum_steps,
    )
    predict_fn = _make_predict_fn(model, mesh, rules)

    # --- Restore, or start from the initial checkpoint.
    ckpt = checkpoints.Checkpointer(workdir, config.max_checkpoints_to_keep)
    step = ckpt.latest_step() or 0
    if step:
        state = ckpt.restore(step, abstract_state(shardings, state))
    else:
        params = checkpoints.merge_params(init_params, state.params, config.init_checkpoint)
        state = state.replace(params=jax.device_put(params, shardings.params))
    best = _read_best(workdir)

    # --- Loop: train, evaluate on dev after every epoch, keep the best.
    writer = MetricWriter(workdir)
    progress = Progress(total_steps, step)
    preemption = Preemption()
    pending = []
    try:
        while step < total_steps:
            local = train_batch(features["train"], step, config.batch_size, config.seed)
            state, metrics = train_step(state, global_batch(local, mesh))
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
                dev = evaluate_dev(task, predict_fn, state.params, features, splits, config, mesh)
                writer.write(step, dev)
                logging.info("step %d %s", step, dev)
                main_key = f"dev/{task.dev_splits[0]}/{task.main_metric}"
                if best is None or dev[main_key] > best[main_key]:
                    best = {**dev, "step": step}
                    _save_best(workdir, cfg, state.params, best)
                ckpt.save(step, state, force=True)
            elif stop:
                check_finite({"parameters": float(all_finite(state.params))}, step)
                ckpt.save(step, state, force=True)
            if stop:
                logging.warning("Stopped at step %d on preemption; re-run to resume.", step)
                return {}
    finally:  # an in-flight async save completes even when the run fails
        ckpt.close()
        writer.close()

    # --- Test predictions from the best checkpoint.
    if config.predict_test:
        _, best_params = pretrained.load(os.path.join(workdir, checkpoints.BEST_DIR))
        best_params = jax.device_put(best_params, shardings.params)
        _write_test_predictions(
            task, best_params, predict_fn, features, splits, config, mesh, workdir
        )
    results = {f"best/{k.removeprefix('dev/')}": v for k, v in best.items() if k != "step"}
    results["best_step"] = best["step"]
    checkpoints.write_results(workdir, results)
    return results


def evaluate_dev(
    task: Task,
    predict_fn: Callable,
    params: Any,
    features: dict[str, dict[str, np.ndarray]],
    splits: dict[str, GlueSplit],
    config: mlc.ConfigDict,
    mesh: Mesh,
) -> dict[str, float]:
    """``dev/<split>/<metric>`` for every dev split of ``task`` (MNLI: matched and mismatched)."""
    dev = {}
    for split in task.dev_splits:
        outputs = predict(predict_fn, params, features[split], config.eval_batch_size, mesh)
        scores = compute_metrics(task.name, to_predictions(outputs, task), splits[split].labels)
        dev.update({f"dev/{split}/{k}": v for k, v in scores.items()})
    return dev


def _make_predict_fn(model, mesh, rules):
    """predict_fn(params, batch) -> float32 outputs of the whole global batch, on every process."""
    jitted = jax.jit(
        lambda params, batch: model.apply(
            {"params": params}, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
        ).astype(jnp.float32),
        out_shardings=replicated(mesh),
    )

    def predict_fn(params, batch):
        with use_mesh(mesh, rules):
            return jitted(params, batch)

    return predict_fn


def _write_test_predictions(task, params, predict_fn, features, splits, config, mesh, workdir):
    for split, file_name in task.submission_files.items():
        if split not in features:
            continue
        outputs = predict(predict_fn, params, features[split], config.eval_batch_size, mesh)
        if jax.process_index() == 0:
            path = os.path.join(workdir, "submission", file_name)
            write_submission(task.name, splits[split].indices, to_predictions(outputs, task), path)
            logging.info("Wrote %s", path)


def _predict_only(config, task, model, params, features, splits, mesh, workdir):
    """AX: the diagnostic set predicted by a fine-tuned MNLI model (``init_checkpoint``)."""
    if "classifier" not in params:
        raise ValueError(
            f"task={task.name} predicts with a fine-tuned {task.predicted_by} model: set "
            f"--config.init_checkpoint to a {task.predicted_by} fine-tuning workdir."
        )
    params = jax.device_put(params, replicated(mesh))
    predict_fn = _make_predict_fn(model, mesh, config.sharding_rules)
    _write_test_predictions(task, params, predict_fn, features, splits, config, mesh, workdir)
    checkpoints.write_results(
        workdir, {"predicted": sum(len(f["input_ids"]) for f in features.values())}
    )
    return {}


def _read_best(workdir: str) -> dict | None:
    path = os.path.join(workdir, "best.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _save_best(workdir: str, cfg: BertConfig, params, best: dict) -> None:
    """Replaces ``WORKDIR/best`` with these parameters: written aside first, then swapped in.

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
        with open(os.path.join(workdir, "best.json.tmp"), "w") as f:
            json.dump(best, f, indent=2)
        os.replace(os.path.join(workdir, "best.json.tmp"), os.path.join(workdir, "best.json"))
    multihost_utils.sync_global_devices("best checkpoint replaced")
