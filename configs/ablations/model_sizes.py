r"""Table 6 of the paper: model size. Layers L, hidden size H and heads A vary together.

Each (L, H, A), feed-forward size 4H, is pretrained once, then fine-tuned on MNLI, MRPC and SST-2.
The columns: the pretraining's held-out masked-LM perplexity ("LM ppl", exp of ``eval/mlm_loss``)
and dev accuracy on MNLI-m, MRPC and SST-2, each the best learning rate on dev, mean ± std over
``seeds`` restarts. The paper's rows: (3, 768, 12), (6, 768, 3), (6, 768, 12), (12, 768, 12),
(12, 1024, 16), (24, 1024, 16), everything else as ``configs/pretrain.py:model=base``:

  python -m bert_jax.sweep --sweep=configs/ablations/model_sizes.py:model=base,seeds=3 \
    --sweep_dir=/runs/table6 --extra=pretrain:--config.data.data_dir=/data/wiki_books \
    --extra=mnli:--config.data_dir=/data/glue --extra=mrpc:--config.data_dir=/data/glue \
    --extra=sst2:--config.data_dir=/data/glue

``model=tiny`` runs the same ladder scaled down to the embedded corpus and synthetic tasks, around
BERT-tiny (2/128/2) and at its recipe: (1, 64, 1), (2, 64, 1), (2, 64, 2), (2, 128, 2),
(4, 128, 2), (4, 192, 3):

  python -m bert_jax.sweep --sweep=configs/ablations/model_sizes.py:model=tiny \
    --sweep_dir=/tmp/table6 --parallel=2

Arguments: ``model`` the recipe the rows start from (base: the paper's rows; tiny: the small
ladder), ``seeds`` fine-tuning restarts per learning rate (default 3; tiny 2).
"""

import math

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Pipeline, Row, Stage

# The rows of Table 6, (layers, hidden size, attention heads), and the paper's results: LM
# perplexity on held-out training data, dev accuracy on MNLI-m, MRPC and SST-2.
PAPER = {
    (3, 768, 12): (5.84, 77.9, 79.8, 88.4),
    (6, 768, 3): (5.24, 80.6, 82.2, 90.7),
    (6, 768, 12): (4.68, 81.9, 84.8, 91.3),
    (12, 768, 12): (3.99, 84.4, 86.7, 92.9),
    (12, 1024, 16): (3.54, 85.7, 86.9, 93.3),
    (24, 1024, 16): (3.23, 86.6, 87.8, 93.7),
}
SIZES = list(PAPER)
TINY_SIZES = [(1, 64, 1), (2, 64, 1), (2, 64, 2), (2, 128, 2), (4, 128, 2), (4, 192, 3)]
COLUMNS = ("LM ppl", "MNLI-m", "MRPC", "SST-2")
PAPER_LEARNING_RATES = [5e-5, 4e-5, 3e-5, 2e-5]  # section 4.1


def mlm_perplexity(results) -> float:
    """The held-out masked-LM perplexity of a pretraining run."""
    return math.exp(results["eval/mlm_loss"])


def get_sweep(arg: str | None = None) -> Pipeline:
    arg = parse_arg(arg, model="base", seeds=0)
    tiny = arg.model == "tiny"
    seeds = arg.seeds or (2 if tiny else 3)
    learning_rates = [1e-4] if tiny else PAPER_LEARNING_RATES
    stages = [
        Stage.grid(
            column, f"configs/glue.py:task={task},model={arg.model}", f"best/{dev}/accuracy",
            learning_rates, seeds, name=task, scale=100,
        )
        for column, task, dev in zip(
            COLUMNS[1:], ("mnli", "mrpc", "sst2"), ("dev_matched", "dev", "dev"), strict=True
        )
    ]  # fmt: skip
    rows = []
    for layers, hidden, heads in TINY_SIZES if tiny else SIZES:
        size = {
            "model.num_layers": layers,
            "model.hidden_size": hidden,
            "model.num_heads": heads,
            "model.intermediate_size": 4 * hidden,
        }
        paper = dict(zip(COLUMNS, PAPER.get((layers, hidden, heads), ()), strict=False))
        rows.append(Row(f"{layers}/{hidden}/{heads}", size, paper=paper))
    return Pipeline(
        f"configs/pretrain.py:model={arg.model}", rows, stages, columns={"LM ppl": mlm_perplexity}
    )
