r"""A SQuAD fine-tuning grid with random restarts: the paper's learning rates around its recipe.

Learning rate {5e-5, 4e-5, 3e-5, 2e-5} x ``seeds`` restarts at the recipe of ``configs/squad.py``
(v1.1: batch 32, 3 epochs; v2.0: batch 48, 2 epochs), ranked by dev F1 at each run's best
checkpoint; the table shows mean ± std over the restarts:

  python -m bert_jax.sweep --sweep=configs/sweeps/squad_paper.py:version=1.1,model=base,seeds=3 \
    --sweep_dir=/tmp/squad_grid --extra=--config.init_checkpoint=/ckpt/bert_base \
    --extra=--config.data_dir=/data/squad

Arguments: ``version`` (1.1, 2.0), ``model`` a size of ``configs/squad.py``, ``seeds`` the number
of restarts (seeds 0 .. seeds-1).
"""

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Sweep


def get_sweep(arg: str | None = None) -> Sweep:
    arg = parse_arg(arg, version="1.1", model="base", seeds=3)
    if arg.seeds < 1:
        raise ValueError(f"seeds={arg.seeds}: need at least one run per setting.")
    return Sweep(
        config=f"configs/squad.py:version={arg.version},model={arg.model}",
        axes=[{"learning_rate": [5e-5, 4e-5, 3e-5, 2e-5]}, {"seed": list(range(arg.seeds))}],
        metric="best/f1",
        mode="max",
    )
