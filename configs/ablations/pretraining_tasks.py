r"""Table 5 of the paper: the pretraining tasks. BERT (masked LM + next-sentence prediction),
No NSP (masked LM alone), LTR & No NSP (a left-to-right LM on a causal model, no NSP; kept causal
when fine-tuned) and + BiLSTM (the LTR model fine-tuned with a randomly initialised BiLSTM on top).

Each pretraining is run once (+ BiLSTM reuses the LTR one), then fine-tuned on MNLI, QNLI, MRPC,
SST-2 and SQuAD v1.1. The columns: dev accuracy (MNLI: matched; MRPC: accuracy, as the paper's
table) and SQuAD F1, each the best learning rate on dev, mean ± std over ``seeds`` restarts; and
the pretraining's held-out accuracy: masked-LM for BERT and No NSP, next-token for the LTR rows
(each row has one of the two; the other shows "-").

  python -m bert_jax.sweep --sweep=configs/ablations/pretraining_tasks.py:model=base,seeds=3 \
    --sweep_dir=/runs/table5 --extra=pretrain:--config.data.data_dir=/data/wiki_books \
    --extra=mnli:--config.data_dir=/data/glue --extra=qnli:--config.data_dir=/data/glue \
    --extra=mrpc:--config.data_dir=/data/glue --extra=sst2:--config.data_dir=/data/glue \
    --extra=squad:--config.data_dir=/data/squad

The embedded variant, ``model=tiny``, runs on the embedded corpus and the synthetic tasks at each
config's tiny learning rate:

  python -m bert_jax.sweep --sweep=configs/ablations/pretraining_tasks.py:model=tiny \
    --sweep_dir=/tmp/table5 --parallel=2

The "LTR" rows are ``configs/pretrain.py``'s ``objective=ltr`` (set here by its fields:
objective, nsp, model.causal); "+ BiLSTM" sets the fine-tuning field ``bilstm_on_top`` in the
stages whose configs declare it (``BILSTM_STAGES``; the others show "-").

Arguments: ``model`` a size of ``configs/pretrain.py`` (and of the fine-tuning configs),
``seeds`` fine-tuning restarts per learning rate (default 3; tiny 2).
"""

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Pipeline, Row, Stage

COLUMNS = ("MNLI-m", "QNLI", "MRPC", "SST-2", "SQuAD F1")
# The paper's dev results (BERT-base), in the order of COLUMNS.
PAPER = {
    "BERT": (84.4, 88.4, 86.7, 92.7, 88.5),
    "No NSP": (83.9, 84.9, 86.5, 92.6, 87.9),
    "LTR & No NSP": (82.1, 84.3, 77.5, 92.1, 77.8),
    "+ BiLSTM": (82.1, 84.1, 75.7, 91.6, 84.9),
}
LTR = {"objective": "ltr", "nsp": False, "model.causal": True}
# The fine-tuning configs with a `bilstm_on_top` field (tests/test_sweep_pipeline.py checks this
# list against the configs).
BILSTM_STAGES = ("squad",)
PAPER_LEARNING_RATES = [5e-5, 4e-5, 3e-5, 2e-5]  # section 4.1


def get_sweep(arg: str | None = None) -> Pipeline:
    arg = parse_arg(arg, model="base", seeds=0)
    tiny = arg.model == "tiny"
    seeds = arg.seeds or (2 if tiny else 3)
    stages = [
        Stage.grid(
            column, f"configs/glue.py:task={task},model={arg.model}", f"best/{dev}/accuracy",
            [1e-4] if tiny else PAPER_LEARNING_RATES, seeds, name=task, scale=100,
        )
        for column, task, dev in zip(
            COLUMNS[:4], ("mnli", "qnli", "mrpc", "sst2"), ("dev_matched", "dev", "dev", "dev"),
            strict=True,
        )
    ]  # fmt: skip
    stages.append(
        Stage.grid(
            COLUMNS[4], f"configs/squad.py:version=1.1,model={arg.model}", "best/f1",
            [3e-4] if tiny else PAPER_LEARNING_RATES, seeds, name="squad",
        )
    )  # fmt: skip

    def row(label, pretrain, finetune=None, stages=None) -> Row:
        paper = dict(zip(COLUMNS, PAPER[label], strict=True))
        return Row(label, pretrain, finetune or {}, paper, stages)

    rows = [
        row("BERT", {"nsp": True}),
        row("No NSP", {"nsp": False}),
        row("LTR & No NSP", LTR),
        row("+ BiLSTM", LTR, {"bilstm_on_top": True}, BILSTM_STAGES),
    ]
    columns = {"MLM acc": "eval/mlm_accuracy", "LTR acc": "eval/lm_accuracy"}
    return Pipeline(f"configs/pretrain.py:model={arg.model}", rows, stages, columns=columns)
