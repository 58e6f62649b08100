"""BERT pretraining on a device mesh: masked LM + next-sentence prediction, or (``objective="ltr"``)
the left-to-right LM of the paper's "LTR & No NSP" ablation.

Reads top to bottom: mesh, data, model, state, step, restore, loop. The loss is in
``bert_jax.objectives``, the step machinery shared with fine-tuning in ``bert_jax.train``.
``main.py`` calls :func:`train_and_evaluate`; tests call it directly with small configs.

Usage::

    from configs import pretrain
    train_and_evaluate(pretrain.get_config("model=tiny"), "/tmp/bert_tiny")
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from bert_jax import checkpoints, faults, optim
from bert_jax.config_lib import to_bert_config
from bert_jax.data import pipeline
from bert_jax.metrics import MetricWriter, Progress, device_peak_flops, training_flops_per_token
from bert_jax.models.heads import BertForPreTraining
from bert_jax.objectives import (
    loss_denominators,
    ltr_denominators,
    ltr_terms,
    make_loss_fn,
    make_ltr_loss_fn,
    pretraining_terms,
)
from bert_jax.sharding import Rules, make_mesh, use_mesh
from bert_jax.tokenizers import load_tokenizer
from bert_jax.train import (
    Batch,
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
# Evaluation on held-out pairs (the objective itself is in bert_jax.objectives).
# ----------------------------------------------------------------------------------------------
def make_eval_step(
    model: BertForPreTraining, objective: str = "mlm"
) -> Callable[[Any, Batch], tuple[dict, dict]]:
    """(metric sums, denominators) of a batch; ``{kind}_...`` metrics divide by ``kind``'s."""
    terms, denominators = (
        (ltr_terms, ltr_denominators)
        if objective == "ltr"
        else (pretraining_terms, loss_denominators)
    )

    @jax.jit
    def eval_step(params, batch):
        return terms(model, params, batch, None, deterministic=True), denominators(batch)

    return eval_step


def evaluate(
    eval_step: Callable, params: Any, batches: Iterable[dict], mesh: Mesh, rules: Rules
) -> dict[str, float]:
    """Loss and accuracy of each objective (MLM and NSP, or next-token and its perplexity) over
    held-out batches, every example counted once."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    with use_mesh(mesh, rules):
        for local in batches:
            batch_sums, batch_weights = jax.device_get(eval_step(params, global_batch(local, mesh)))
            for totals, new in ((sums, batch_sums), (weights, batch_weights)):
                for k, v in new.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
    metrics = {f"eval/{k}": v / weights[k.split("_")[0]] for k, v in sums.items()}
    if "eval/lm_loss" in metrics:
        metrics["eval/lm_perplexity"] = math.exp(metrics["eval/lm_loss"])
    return metrics


# ----------------------------------------------------------------------------------------------
# Phases: the paper trains 90% of the steps at length 128, then the rest at 512.
# ----------------------------------------------------------------------------------------------
def phases(config: mlc.ConfigDict) -> list[tuple[int, int, int]]:
    """[(first_step, seq_len, max_predictions)] in order; one entry when there is no phase 2."""
    d = config.data
    first = [(0, d.seq_len, d.max_predictions)]
    if d.phase2_fraction <= 0:
        return first
    start = round(config.total_steps * (1 - d.phase2_fraction))
    return [*first, (start, d.phase2_seq_len, d.phase2_max_predictions)]


def phase_at(config: mlc.ConfigDict, step: int) -> tuple[int, int, int]:
    return [p for p in phases(config) if p[0] <= step][-1]


def prepare_embedded_corpus(config: mlc.ConfigDict, workdir: str) -> str:
    """Generates and prepares the synthetic corpus once (process 0); others wait for it."""
    from bert_jax import prepare

    data_dir = os.path.join(workdir, "data")
    done = os.path.join(data_dir, "DONE")
    if jax.process_index() == 0 and not os.path.exists(done):
        shutil.rmtree(data_dir, ignore_errors=True)  # a preparation cut short: ours to redo
        lengths = sorted({p[1] for p in phases(config)})
        prepare.prepare(
            output=data_dir,
            synthetic=config.data.synthetic_documents,
            spm_vocab_size=config.data.vocab_size,
            max_seq_lengths=lengths,
            seed=config.seed,
        )
        open(done, "w").close()
    multihost_utils.sync_global_devices("embedded corpus prepared")
    return data_dir


def make_loader(
    config: mlc.ConfigDict, data_dir: str, split: str, step: int, **kwargs: Any
) -> Iterator[dict[str, np.ndarray]]:
    _, seq_len, max_predictions = phase_at(config, step)
    if config.objective == "ltr":  # the raw tokens, no masking
        max_predictions = 0
    d = config.data
    return pipeline.make_pretraining_loader(
        data_dir,
        split,
        seq_len=seq_len,
        global_batch_size=config.batch_size,
        seed=config.seed,
        masked_lm_prob=d.masked_lm_prob,
        max_predictions=max_predictions,
        mask_token_ratio=d.mask_token_ratio,
        random_token_ratio=d.random_token_ratio,
        whole_word=d.whole_word,
        max_pairs_per_row=d.max_pairs_per_row,
        dynamic=d.dynamic_masking,
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------------------------
def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
    """Pretrains (or resumes pretraining) in ``workdir``; returns the last logged metrics.

    A finished run leaves ``WORKDIR/results.json`` (final training and eval metrics). The run holds
    ``workdir`` throughout: a second run started on it refuses (``bert_jax.faults``).
    """
    with faults.hold_workdir(workdir):
        return _train_and_evaluate(config, workdir)


def check_objective(config: mlc.ConfigDict) -> None:
    """The objective and the model agree: MLM on a bidirectional model, left-to-right (without
    NSP) on a causal one."""
    objective, causal = config.objective, config.model.causal
    if objective not in ("mlm", "ltr") or causal != (objective == "ltr"):
        raise ValueError(
            f"objective={objective!r} with model.causal={causal}: use objective 'mlm' with a "
            "bidirectional model, or 'ltr' with a causal one (configs/pretrain.py:objective=ltr "
            "sets both)."
        )
    if objective == "ltr" and config.nsp:
        raise ValueError("objective='ltr' trains without NSP (the paper's 'LTR & No NSP').")


def _train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
    check_objective(config)
    # --- Mesh and workdir.
    mesh = make_mesh(config.mesh_shape)
    rules = config.sharding_rules
    checkpoints.check_compatible_workdir(workdir, config)
    logging.info("Mesh %s over %d devices", dict(mesh.shape), mesh.size)

    # --- Data.
    if config.data.synthetic_documents:
        data_dir = prepare_embedded_corpus(config, workdir)
    elif config.data.data_dir:
        data_dir = config.data.data_dir
    else:
        raise ValueError(
            "No pretraining data: set --config.data.data_dir to a folder written by "
            "`python -m bert_jax.prepare`, or --config.data.synthetic_documents=N for the "
            "embedded synthetic corpus."
        )
    check_batch_size("batch_size", config.batch_size, mesh, config.grad_accum_steps)
    # Every shard the run reads is checked now, not hours in; a resumed run must read the data
    # its checkpoint was reading.
    reads = [(seq_len, "train") for _, seq_len, _ in phases(config)]
    reads += [(seq_len, "eval") for _, seq_len, _ in phases(config)] * bool(config.eval_every_steps)
    fingerprint = faults.check_prepared(data_dir, reads, config.data.verify_checksums)
    ckpt = checkpoints.Checkpointer(
        workdir,
        config.max_checkpoints_to_keep,
        keep_going_on_save_error=config.keep_going_on_save_error,
        data_fingerprint=fingerprint,
    )
    step = ckpt.latest_step() or 0
    ckpt.check_same_data(step, config.allow_data_change)
    if config.eval_every_steps:  # fail now rather than at the first evaluation, hours in
        make_loader(config, data_dir, "eval", 0, shuffle=False, num_epochs=1)
    tokenizer = load_tokenizer(os.path.join(data_dir, "tokenizer"))
    checkpoints.keep_tokenizer(tokenizer, workdir)  # fine-tuning reads it from there

    # --- Model.
    cfg = to_bert_config(config.model)
    # The model's vocabulary may be padded beyond the tokenizer's (e.g. to a multiple of 128).
    if cfg.vocab_size < tokenizer.vocab_size:
        raise ValueError(
            f"config.model.vocab_size={cfg.vocab_size} but the tokenizer in {data_dir} has "
            f"{tokenizer.vocab_size} tokens; set --config.model.vocab_size={tokenizer.vocab_size}."
        )
    model = BertForPreTraining(cfg)
    seq_len_max = max(p[1] for p in phases(config))
    if seq_len_max > cfg.max_position_embeddings:
        raise ValueError(
            f"Sequences of {seq_len_max} tokens need max_position_embeddings >= {seq_len_max} "
            f"(config.model.max_position_embeddings={cfg.max_position_embeddings})."
        )

    # --- Optimizer and sharded state.
    schedule, tx = optim.from_config(config, config.total_steps, config.warmup_steps)
    dummy = jnp.zeros((1, config.data.seq_len), jnp.int32)

    def init_params(rng):
        return model.init(rng, dummy, masked_positions=dummy[:, :1])["params"]

    state, shardings = create_train_state(init_params, tx, mesh, rules, config.seed)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("BertForPreTraining (%s): %.1fM parameters", config.model_name, n_params / 1e6)

    # --- Step.
    ltr = config.objective == "ltr"
    train_step = make_train_step(
        make_ltr_loss_fn(model) if ltr else make_loss_fn(model, config.nsp),
        ltr_denominators if ltr else loss_denominators,
        tx,
        shardings,
        mesh,
        rules,
        config.grad_accum_steps,
    )
    eval_step = make_eval_step(model, config.objective)

    # --- Restore, or start (from an initial checkpoint when given).
    data_iter = make_loader(
        config, data_dir, "train", max(step - 1, 0), worker_count=config.data.worker_count
    )
    if step:
        state = ckpt.restore(step, abstract_state(shardings, state), data_iter)
        logging.info("Resuming from step %d", step)
    elif config.init_checkpoint:
        ckpt_model, params, ckpt_tokenizer = checkpoints.load_init_checkpoint(
            config.init_checkpoint
        )
        checkpoints.check_same_model(ckpt_model, cfg, config.init_checkpoint)
        checkpoints.check_same_tokenizer(ckpt_tokenizer, tokenizer, config.init_checkpoint)
        params = checkpoints.merge_params(params, state.params, config.init_checkpoint)
        state = state.replace(params=jax.device_put(params, shardings.params))

    # --- Loop.
    writer = MetricWriter(workdir)
    progress = Progress(config.total_steps, step)
    preemption = Preemption()
    peak = device_peak_flops()
    pending: list[dict] = []
    tokens = examples = rows = 0
    t0 = time.monotonic()
    last: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    try:
        while step < config.total_steps:
            phase = phase_at(config, step)
            if step == phase[0] and step > 0:
                logging.info("Phase change at step %d: seq_len %d", step, phase[1])
                data_iter.close()  # stops its worker processes
                data_iter = make_loader(
                    config, data_dir, "train", step, worker_count=config.data.worker_count
                )
            try:
                local = next(data_iter)
            except faults.DataError as e:  # a shard damaged since the start-up check
                raise faults.DataError(f"Step {step + 1}: {e} {ckpt.committed()}") from e
            # Host-side counts of this process's rows, scaled to the global batch: no device sync.
            rows += len(local["input_ids"]) * jax.process_count()
            pairs = (
                local["nsp_weights"].sum() if "nsp_weights" in local else len(local["input_ids"])
            )
            examples += int(pairs) * jax.process_count()
            tokens += int(local["attention_mask"].sum()) * jax.process_count()
            state, metrics = train_step(state, global_batch(local, mesh))
            pending.append(metrics)
            step += 1

            if step % config.log_every_steps == 0 or step == config.total_steps:
                averaged, num_steps = mean_metrics(pending), len(pending)
                pending = []
                check_finite(averaged, step)
                dt = time.monotonic() - t0
                # Sequence length S of the attention term: the row length (an upper bound when
                # packed); the MLM head computes every prediction slot of every row (the
                # left-to-right head: every position).
                head = phase[1] if ltr else phase[2]
                flops = (
                    training_flops_per_token(cfg, phase[1], head * rows / max(tokens, 1)) * tokens
                )
                last = {
                    **averaged,
                    "learning_rate": float(schedule(step - 1)),
                    "tokens_per_sec": tokens / dt,
                    "examples_per_sec": examples / dt,
                    "step_time": dt / num_steps,
                    "tflops_per_device": flops / dt / jax.device_count() / 1e12,
                }
                if peak:
                    last["mfu"] = flops / dt / jax.device_count() / peak
                writer.write(step, last)
                progress.update(step, last["loss"])
                accuracies = [f"{k} {v:.3f}" for k, v in last.items() if k.endswith("_accuracy")]
                logging.info(
                    "step %d: loss %.4f, %s, %.0f tokens/s",
                    step, last["loss"], ", ".join(accuracies), last["tokens_per_sec"],
                )  # fmt: skip
                tokens = examples = rows = 0
                t0 = time.monotonic()

            # Save before evaluating: an evaluation that fails must not cost the checkpoint.
            stop = preemption.requested or ckpt.reached_preemption(step)
            if step % config.checkpoint_every_steps == 0 or step == config.total_steps or stop:
                # Never commit a state that a non-finite update produced.
                check_finite({"parameters": float(all_finite(state.params))}, step)
                ckpt.save(step, state, data_iter, force=True)
            if config.eval_every_steps and (
                step % config.eval_every_steps == 0 or step == config.total_steps
            ):
                eval_start = time.monotonic()
                eval_loader = make_loader(
                    config, data_dir, "eval", step - 1, shuffle=False, num_epochs=1
                )
                batches = (
                    b for _, b in zip(range(config.data.eval_batches), eval_loader, strict=False)
                )
                last_eval = evaluate(eval_step, state.params, batches, mesh, rules)
                if not config.nsp:  # an untrained head's accuracy would only mislead
                    last_eval = {k: v for k, v in last_eval.items() if "nsp" not in k}
                writer.write(step, last_eval)
                logging.info("step %d %s", step, last_eval)
                t0 += time.monotonic() - eval_start  # throughput counts training time only

            if stop:
                logging.warning("Stopped at step %d on preemption; re-run to resume.", step)
                break
    finally:  # an in-flight async save completes even when the run fails
        preemption.close()
        ckpt.close()
        writer.close()
        data_iter.close()  # after the last save, which reads the loader's state
    if step >= config.total_steps:
        checkpoints.write_results(workdir, {"step": step, **last, **last_eval})
    return {**last, **last_eval}
