r"""The rows of the paper's Table 7 (CoNLL-2003 NER dev F1, BERT-base): the feature-based
approach with each choice of frozen-encoder features, and fine-tuning as the reference row.

Feature rows (``configs/ner.py:mode=feature``: a two-layer BiLSTM of 768 units per direction on
frozen features) and the paper's dev F1: embeddings 91.0, second_to_last 95.6, last 94.9,
sum_last_four 95.9, concat_last_four 96.1, sum_all 95.5; ``seeds`` restarts each, ranked by
dev F1 (``best/f1``), mean ± std over the restarts:

  python -m bert_jax.sweep --sweep=configs/sweeps/ner_feature_based.py:model=base,seeds=5 \
    --sweep_dir=/tmp/table7 --extra=--config.init_checkpoint=/ckpt/bert-base-cased \
    --extra=--config.data_dir=/data/conll2003

The fine-tuning row (paper: dev 96.4) is ``configs/ner.py:mode=finetune`` (a sweep of its own:
``--sweep=configs/sweeps/ner_feature_based.py:mode=finetune``, over the paper's learning rates).

Arguments: ``model`` a size of ``configs/ner.py``, ``seeds`` the number of restarts (seeds 0 ..
seeds-1), ``mode`` feature (Table 7's feature rows) or finetune.
"""

from bert_jax.config_lib import parse_arg
from bert_jax.models.heads import FEATURE_LAYERS
from bert_jax.sweep import Sweep


def get_sweep(arg: str | None = None) -> Sweep:
    arg = parse_arg(arg, model="base", seeds=5, mode="feature")
    if arg.seeds < 1:
        raise ValueError(f"seeds={arg.seeds}: need at least one run per setting.")
    seeds = {"seed": list(range(arg.seeds))}
    if arg.mode == "finetune":
        axes = [{"learning_rate": [5e-5, 4e-5, 3e-5, 2e-5]}, seeds]
    elif arg.mode == "feature":
        axes = [{"feature.layers": list(FEATURE_LAYERS)}, seeds]
    else:
        raise ValueError(f"Unknown mode {arg.mode!r}; use feature or finetune.")
    return Sweep(
        config=f"configs/ner.py:mode={arg.mode},model={arg.model}",
        axes=axes,
        metric="best/f1",
        mode="max",
    )
