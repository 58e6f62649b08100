r"""Table 6 of the paper: model size. Layers L, hidden size H and heads A vary together.

(L, H, A) in (3, 768, 12), (6, 768, 3), (6, 768, 12), (12, 768, 12), (12, 1024, 16),
(24, 1024, 16), feed-forward size 4H; everything else is ``configs/pretrain.py:model=base``.
Ranked by held-out masked-LM accuracy (the paper also reports MLM perplexity and fine-tuned dev
accuracy on MNLI-m, MRPC and SST-2: fine-tune each checkpoint with
``configs/sweeps/glue_paper.py``):

  python -m bert_jax.sweep --sweep=configs/ablations/model_sizes.py \
    --sweep_dir=/tmp/ablations/model_sizes --extra=--config.data.data_dir=/data/wiki_books

Arguments: ``model`` the size whose recipe (vocabulary, dropout, ...) the rows start from,
``seeds`` restarts per row.
"""

from bert_jax.config_lib import parse_arg
from bert_jax.sweep import Sweep

# The rows of Table 6: (layers, hidden size, attention heads).
SIZES = [(3, 768, 12), (6, 768, 3), (6, 768, 12), (12, 768, 12), (12, 1024, 16), (24, 1024, 16)]


def get_sweep(arg: str | None = None) -> Sweep:
    arg = parse_arg(arg, model="base", seeds=1)
    layers, hidden, heads = zip(*SIZES, strict=True)
    return Sweep(
        config=f"configs/pretrain.py:model={arg.model}",
        axes=[
            {
                "model.num_layers": layers,
                "model.hidden_size": hidden,
                "model.num_heads": heads,
                "model.intermediate_size": [4 * h for h in hidden],
            },
            {"seed": list(range(arg.seeds))},
        ],
        metric="eval/mlm_accuracy",
        mode="max",
    )
