r"""The paper's GLUE fine-tuning grid (Devlin et al., 2018, appendix A.3), with random restarts.

Batch size {16, 32} x learning rate {5e-5, 3e-5, 2e-5} x epochs {2, 3, 4} x ``seeds`` restarts,
ranked by the task's main dev metric (MNLI: matched accuracy, CoLA: Matthews correlation, STS-B:
Spearman, MRPC/QQP: F1, else accuracy) at each run's best checkpoint:

  python -m bert_jax.sweep --sweep=configs/sweeps/glue_paper.py:task=mrpc,model=base,seeds=3 \
    --sweep_dir=/tmp/glue_grid/mrpc --parallel=2 \
    --extra=--config.init_checkpoint=/ckpt/bert_base

Arguments: ``task`` a GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), ``model`` a
size of ``configs/glue.py``, ``seeds`` the number of restarts (seeds 0 .. seeds-1).
"""

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Sweep
from bert_jax.tasks.glue import get_task


def get_sweep(arg: str | None = None) -> Sweep:
    arg = parse_arg(arg, task="mrpc", model="base", seeds=1)
    task = get_task(arg.task)
    if not task.dev_splits:
        raise ValueError(f"GLUE task {task.name!r} has no dev split to tune on; pick another.")
    if arg.seeds < 1:
        raise ValueError(f"seeds={arg.seeds}: need at least one run per setting.")
    return Sweep(
        config=f"configs/glue.py:task={task.name},model={arg.model}",
        axes=[
            {"batch_size": [16, 32]},
            {"learning_rate": [5e-5, 3e-5, 2e-5]},
            {"num_epochs": [2, 3, 4]},
            {"seed": list(range(arg.seeds))},
        ],
        metric=f"best/{task.dev_splits[0]}/{task.main_metric}",
        mode="max",
    )
