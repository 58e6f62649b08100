r"""Table 5 of the paper: pretraining with and without the next-sentence-prediction loss.

Two settings, ``nsp=True`` (MLM + NSP, the paper's BERT) and ``nsp=False`` (MLM alone, "No NSP"),
times ``seeds`` restarts, ranked by held-out masked-LM accuracy:

  python -m bert_jax.sweep --sweep=configs/ablations/no_nsp.py:model=base \
    --sweep_dir=/tmp/ablations/no_nsp --extra=--config.data.data_dir=/data/wiki_books

The paper compares the two by fine-tuning (MNLI, QNLI, MRPC, SST-2, SQuAD): fine-tune each run's
checkpoint with ``configs/sweeps/glue_paper.py`` and ``--extra=--config.init_checkpoint=...``.
The paper's third row, a left-to-right language model without NSP ("LTR & No NSP"), is not
supported: bert_jax trains only the bidirectional masked-LM objective.

Arguments: ``model`` a size of ``configs/pretrain.py``, ``seeds`` restarts per setting.
"""

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Sweep


def get_sweep(arg: str | None = None) -> Sweep:
    arg = parse_arg(arg, model="base", seeds=1)
    return Sweep(
        config=f"configs/pretrain.py:model={arg.model}",
        axes=[{"nsp": [True, False]}, {"seed": list(range(arg.seeds))}],
        metric="eval/mlm_accuracy",
        mode="max",
    )
