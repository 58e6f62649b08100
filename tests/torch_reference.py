"""Independent references in PyTorch, shared by the tests: the original BERT optimizer and its
learning-rate schedule, transcribed from google-research/bert's optimization.py."""

import torch


class AdamWeightDecay(torch.optim.Optimizer):
    """AdamWeightDecayOptimizer.apply_gradients: Adam without bias correction, the decoupled weight
    decay added to the update (per param group, 0 for LayerNorm and biases), then times lr."""

    def __init__(self, params, lr, weight_decay, b1=0.9, b2=0.999, eps=1e-6):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, b1=b1, b2=b2, eps=eps))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                s = self.state[p]
                if not s:
                    s["m"], s["v"] = torch.zeros_like(p), torch.zeros_like(p)
                s["m"].mul_(g["b1"]).add_(p.grad, alpha=1 - g["b1"])
                s["v"].mul_(g["b2"]).addcmul_(p.grad, p.grad, value=1 - g["b2"])
                update = s["m"] / (s["v"].sqrt() + g["eps"]) + g["weight_decay"] * p
                p.sub_(g["lr"] * update)


def original_bert_lr(t, peak, total, warmup, end=0.0, power=1.0):
    """optimization.create_optimizer: polynomial decay from step 0 (cycle=False); for t < warmup
    the linear warmup peak * t / warmup replaces it."""
    if warmup and t < warmup:
        return peak * t / warmup
    return (peak - end) * (1 - min(t, total) / total) ** power + end
