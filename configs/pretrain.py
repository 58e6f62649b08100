r"""BERT pretraining (masked LM + next-sentence prediction).

The paper's recipe (Devlin et al., 2018) on BERT-base, from text prepared by ``bert_jax.prepare``:

  python -m bert_jax.main --config=configs/pretrain.py:model=base --workdir=/tmp/bert_base \
    --config.data.data_dir=/data/wiki_books

The embedded default needs no download: ``model=tiny`` generates a synthetic corpus, prepares it,
trains its vocabulary and pretrains in a few minutes on a CPU:

  python -m bert_jax.main --config=configs/pretrain.py:model=tiny --workdir=/tmp/bert_tiny

The paper's "LTR & No NSP" ablation (Table 5): a left-context-only (causal) model trained as a
left-to-right language model, every position predicting the next token, without NSP or masking:

  python -m bert_jax.main --config=configs/pretrain.py:model=tiny,objective=ltr --workdir=/tmp/ltr

Arguments (``configs/pretrain.py:key=value,...``): ``model`` one of tiny, mini, small, medium, base,
large; ``objective`` mlm (the default) or ltr. Every field below can be overridden with
``--config.FIELD=VALUE``.
"""

import ml_collections as mlc

from bert_jax.config_lib import base_config, model_config, parse_arg


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    arg = parse_arg(arg, model="base", objective="mlm")
    if arg.objective not in ("mlm", "ltr"):
        raise ValueError(f"Unknown objective {arg.objective!r}; choose 'mlm' or 'ltr'.")
    c = base_config()
    c.experiment = "pretrain"
    c.model_name = arg.model
    c.model = model_config(arg.model)

    # The paper: batch 256, 1M steps, Adam (no bias correction in the released code) lr 1e-4,
    # 10k warmup steps then linear decay, weight decay 0.01, clip 1.0, dropout 0.1.
    c.total_steps = 1_000_000
    c.batch_size = 256
    c.optimizer = "bert_adam"
    c.learning_rate = 1e-4
    c.warmup_steps = 10_000
    c.schedule = "bert"
    c.weight_decay = 0.01
    c.eps = 1e-6

    # "mlm": masked LM (+ NSP); "ltr": a left-to-right LM on a causal model (model.causal, kept by
    # fine-tuning), on the raw tokens of the same rows, with no NSP (the paper's "LTR & No NSP").
    c.objective = arg.objective
    c.nsp = arg.objective == "mlm"  # False trains MLM alone (the paper's "No NSP" ablation)

    c.data = d = mlc.ConfigDict()
    d.data_dir = mlc.FieldReference(None, field_type=str)  # written by `python -m bert_jax.prepare`
    d.synthetic_documents = 0  # >0: generate and prepare the embedded corpus in WORKDIR/data
    d.vocab_size = 0  # SentencePiece vocabulary trained for the embedded corpus
    d.seq_len = 128
    d.max_predictions = 20
    # The paper's two phases: the last `phase2_fraction` of steps at a longer length.
    d.phase2_fraction = 0.1
    d.phase2_seq_len = 512
    d.phase2_max_predictions = 80
    d.masked_lm_prob = 0.15
    d.mask_token_ratio = 0.8  # the rest of the selected tokens: random_token_ratio random,
    d.random_token_ratio = 0.1  # and what remains kept unchanged
    d.whole_word = False
    # >1 reads rows packed by `prepare --max_pairs_per_row` (attention stays inside each pair);
    # give packed rows the MLM slots of all their pairs, e.g. data.max_predictions=40 at seq 128.
    d.max_pairs_per_row = 1
    d.dynamic_masking = True  # a fresh mask every epoch (static: one mask per example)
    # grain worker processes that read and mask training batches (0: in the training process,
    # about 1.5M tokens/s per core). The same batches for any value, but a run resumes with the
    # worker count it was started with (the loader's checkpointed state depends on it).
    d.worker_count = 0
    d.eval_batches = 20
    # Before training, shards are checked against prepare's record counts and sizes; this also
    # compares their sha256 (reads every shard once).
    d.verify_checksums = False

    c.log_every_steps = 100
    c.eval_every_steps = 10_000
    c.checkpoint_every_steps = 10_000

    if arg.model == "tiny":
        # The embedded default: small enough to pretrain on 2 CPU cores in a few minutes.
        c.model = model_config("tiny", vocab_size=256, max_position_embeddings=128)
        c.total_steps = 1200
        c.batch_size = 64
        # Measured on the synthetic corpus: AdamW at 3e-3 learns MLM and NSP within the budget;
        # 1e-3, or bert_adam at 5e-4, are far slower.
        c.optimizer = "adamw"
        c.learning_rate = 3e-3
        c.warmup_steps = 100
        d.synthetic_documents = 4000
        d.vocab_size = 256
        d.seq_len = 64
        d.max_predictions = 10
        d.phase2_fraction = 0.0
        d.eval_batches = 8
        c.log_every_steps = 50
        c.eval_every_steps = 400
        c.checkpoint_every_steps = 400

    c.model.causal = arg.objective == "ltr"
    c.lock()
    return c
