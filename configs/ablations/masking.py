r"""Table 8 of the paper: what a selected token becomes (MASK / SAME / RND).

Of the 15% of tokens selected for prediction, the fraction replaced by [MASK], kept unchanged and
replaced by a random token: 80/10/10 (BERT), 100/0/0, 80/0/20, 80/20/0, 0/20/80, 0/0/100. Set
through ``data.mask_token_ratio`` (MASK) and ``data.random_token_ratio`` (RND); SAME is the rest.

  python -m bert_jax.sweep --sweep=configs/ablations/masking.py:model=base \
    --sweep_dir=/tmp/ablations/masking --extra=--config.data.data_dir=/data/wiki_books

Runs are ranked by held-out masked-LM accuracy, which each run measures under its own masking, so
it is not a like-for-like comparison: the paper compares fine-tuned dev accuracy (MNLI) and NER.
Fine-tune each checkpoint with ``configs/sweeps/glue_paper.py`` for that.

Arguments: ``model`` a size of ``configs/pretrain.py``, ``seeds`` restarts per strategy.
"""

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Sweep

# The rows of Table 8 in percent: (MASK, SAME, RND).
STRATEGIES = [(80, 10, 10), (100, 0, 0), (80, 0, 20), (80, 20, 0), (0, 20, 80), (0, 0, 100)]


def get_sweep(arg: str | None = None) -> Sweep:
    arg = parse_arg(arg, model="base", seeds=1)
    return Sweep(
        config=f"configs/pretrain.py:model={arg.model}",
        axes=[
            {
                "data.mask_token_ratio": [mask / 100 for mask, _, _ in STRATEGIES],
                "data.random_token_ratio": [rnd / 100 for _, _, rnd in STRATEGIES],
            },
            {"seed": list(range(arg.seeds))},
        ],
        metric="eval/mlm_accuracy",
        mode="max",
    )
