"""Optimisers and LR schedule of upstream TRM (docs/fidelity.md#optimisers-and-schedule), in pure PyTorch.

    from trm.optim import make_adam_atan2, SparseSignSGD, cosine_schedule_with_warmup_lr
    opts = [SparseSignSGD(model.puzzle_emb, lr=0, weight_decay=0.1),        # stepped first
            make_adam_atan2(model.parameters(), lr=0, betas=(0.9, 0.95), weight_decay=0.1)]
    for step in range(1, total_steps + 1):      # step counts from 1 at the first update
        ...loss.backward()...
        for opt, base in zip(opts, (1e-2, 1e-4)):
            for g in opt.param_groups:
                g["lr"] = cosine_schedule_with_warmup_lr(step, base, 2000, total_steps, 1.0)
            opt.step(); opt.zero_grad()

Checked against the golden optimizer references by tests/test_optim.py.

An option (`--optimizer muon`, not upstream's recipe): torch.optim.Muon on the 2-D weight matrices of
the recurrent net (muon_params), AdamATan2 on every other weight (embeddings, lm/q heads, q bias;
TRM's RMSNorm has no weights), the puzzle table unchanged (SparseSignSGD).
docs/training.md#muon---optimizer-muon.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from trm.errors import UserError


def _closure_loss(closure):
    """torch.optim's step(closure) convention: re-evaluate the loss with grad enabled."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class AdamATan2(torch.optim.Optimizer):
    """The adam-atan2 0.0.3 (imoneoi) CUDA kernel's rule, for any device; lr=0 is allowed.

    Per parameter, with t incremented first (t = 1 at the first update), scalars in float64:
        p <- p * (1 - lr*wd)                        decoupled weight decay on every parameter
        m <- lerp(m, g, 1 - b1);  v <- lerp(v, g*g, 1 - b2)
        p <- p - lr/(1 - b1^t) * atan2(m, sqrt(v) / sqrt(1 - b2^t))
    No eps; m's bias correction sits outside the atan2. This is NOT lucidrains' adam-atan2-pytorch.
    State per parameter as upstream: `step` (float32 0-d tensor, kept on CPU so reading it never
    syncs a GPU), `exp_avg`, `exp_avg_sq` (parameter dtype).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 1e-2):
        if lr < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid AdamATan2 hyper-parameters lr={lr} betas={betas} wd={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
            buckets: dict[tuple, list] = {}  # (t, device, dtype) -> params that share the scalars
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                buckets.setdefault((float(state["step"]), p.device, p.dtype), []).append(p)
            for (t, _, _), ps in buckets.items():
                grads = [p.grad for p in ps]
                ms = [self.state[p]["exp_avg"] for p in ps]
                vs = [self.state[p]["exp_avg_sq"] for p in ps]
                step_size = lr / (1 - b1**t)
                bc2_sqrt = math.sqrt(1 - b2**t)
                torch._foreach_mul_(ps, 1 - lr * wd)
                torch._foreach_lerp_(ms, grads, 1 - b1)
                torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1 - b2)
                denoms = torch._foreach_div(torch._foreach_sqrt(vs), bc2_sqrt)
                updates = [torch.atan2(m, d) for m, d in zip(ms, denoms)]  # atan2(0, 0) = 0
                torch._foreach_add_(ps, updates, alpha=-step_size)
        return loss


def make_adam_atan2(params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                    weight_decay: float = 1e-2, prefer_fused: bool = True) -> torch.optim.Optimizer:
    """The fused CUDA `adam_atan2.AdamATan2` when it imports and every parameter sits on a CUDA
    device of compute capability >= 8.0 (the only ones it is built for); else the pure version."""
    params = list(params)
    if prefer_fused and params:
        tensors = [p for g in params for p in g["params"]] if isinstance(params[0], dict) else params
        devices = {p.device for p in tensors}
        if all(d.type == "cuda" and torch.cuda.get_device_capability(d)[0] >= 8 for d in devices):
            try:
                from adam_atan2 import AdamATan2 as FusedAdamATan2
            except ImportError:
                pass
            else:
                return FusedAdamATan2(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return AdamATan2(params, lr=lr, betas=betas, weight_decay=weight_decay)


OPTIMIZERS = ("adam_atan2", "muon")  # TrainConfig.optimizer: upstream's recipe, or Muon on the blocks
# Muon's per-matrix LR rule: lr * 0.2 * sqrt(max(rows, cols)) ("Muon is Scalable for LLM Training",
# Moonshot 2025), which gives the orthogonalised update the RMS of an Adam step (~0.2), so Muon runs
# at the LR tuned for the Adam-family optimizer it replaces.
MUON_LR_RULE = "match_rms_adamw"


def muon_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters Muon trains: every 2-D weight of the recurrent net's blocks (attention qkv / o,
    SwiGLU gate_up / down, or the token-mixing SwiGLU of mlp_t), each one matrix (qkv not split)."""
    return [p for p in model.net.parameters() if p.ndim == 2 and p.requires_grad]


def make_muon(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch.optim.Muon (torch >= 2.9): Nesterov momentum (buf <- lerp(buf, g, 1 - momentum), update
    from lerp(g, buf, momentum)), 5 Newton-Schulz steps in bfloat16 orthogonalising it, decoupled
    weight decay p <- p * (1 - lr*wd), then p <- p - lr * 0.2 * sqrt(max(A, B)) * update."""
    muon_cls = getattr(torch.optim, "Muon", None)
    if muon_cls is None:
        raise UserError(f"--optimizer muon needs torch.optim.Muon (torch >= 2.9); this torch is "
                        f"{torch.__version__}: upgrade torch or use --optimizer adam_atan2")
    return muon_cls(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True,
                    adjust_lr_fn=MUON_LR_RULE)


class SparseSignSGD(torch.optim.Optimizer):
    """Sign-SGD on the touched rows of the sparse puzzle table (trm.model.PuzzleEmbedding).

    step(): G = puzzle_emb.local_weights.grad [B, D], ids = puzzle_emb.local_ids [B] (gathered from
    all ranks first when torch.distributed runs with world_size > 1); grads of duplicate ids are
    summed into S; then only those rows: W[ids] = W[ids] * (1 - lr*wd) - lr * sign(S).
    Untouched rows are not decayed. It is a torch Optimizer over the table buffer, so
    param_groups[0]["lr"], state_dict() and load_state_dict() work as usual (there is no state).
    """

    def __init__(self, puzzle_emb: nn.Module, lr: float = 1e-2, weight_decay: float = 0.1):
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"invalid SparseSignSGD lr={lr} weight_decay={weight_decay}")
        puzzle_emb = getattr(puzzle_emb, "puzzle_emb", puzzle_emb)  # accept the TRM itself
        self.puzzle_emb = puzzle_emb
        super().__init__([puzzle_emb.weights], dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
        local = self.puzzle_emb.local_weights
        if local is None or local.grad is None:
            return loss
        grad, ids = local.grad, self.puzzle_emb.local_ids
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ws = dist.get_world_size()
            all_grad = grad.new_empty((ws * grad.shape[0],) + grad.shape[1:])
            all_ids = ids.new_empty(ws * ids.shape[0])
            dist.all_gather_into_tensor(all_grad, grad.contiguous())
            dist.all_gather_into_tensor(all_ids, ids.contiguous())
            grad, ids = all_grad, all_ids
        self.apply(ids, grad)
        return loss

    @torch.no_grad()
    def apply(self, ids: Tensor, grad: Tensor) -> None:
        """The update from explicit per-row grads [B, D] and ids [B] (duplicates allowed)."""
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        weights = self.puzzle_emb.weights  # [N, D] fp32
        uniq, inv = torch.unique(ids.long(), return_inverse=True)
        summed = grad.new_zeros(uniq.shape[0], grad.shape[1]).index_add_(0, inv, grad)  # [U, D]
        rows = weights[uniq] * (1 - lr * wd) - lr * summed.sign()
        weights.index_copy_(0, uniq, rows.to(weights.dtype))

    def zero_grad(self, set_to_none: bool = True) -> None:
        local = self.puzzle_emb.local_weights
        if local is not None and local.grad is not None:
            if set_to_none:
                local.grad = None
            else:
                local.grad.zero_()


def cosine_schedule_with_warmup_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                                   min_ratio: float = 1.0) -> float:
    """Upstream's LR at update `step` (counted from 1): linear warm-up, then cosine down to
    base_lr*min_ratio at total_steps. min_ratio 1.0 (upstream's config default) = constant.
    As upstream, progress is not clamped: past total_steps the cosine rises again (upstream makes
    no updates there), so callers should stop at total_steps."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


class DynamicLossScale:
    """Dynamic loss scaling for float16 forwards (T4): the rule of torch.amp.GradScaler.

    fp16 activations' gradients underflow below ~6e-8; the loss is multiplied by `scale` before
    backward and every gradient divided by it before the update. A step whose gradients hold an
    inf/NaN is skipped (no optimizer, no EMA) and the scale halves; after `growth_interval`
    finite steps in a row it doubles. Defaults are GradScaler's (2^16, x2 / 2000 steps, x0.5).

    Why not GradScaler itself: the puzzle table is updated by SparseSignSGD.apply from gathered
    per-row grads, outside any torch Optimizer; the dense and the sparse update must be skipped
    together, on every rank alike (the check runs after the all-reduce / all-gather, so every rank
    sees the same sums and takes the same decision).
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000):
        self.scale = float(init_scale)
        self.growth_factor, self.backoff_factor, self.growth_interval = (growth_factor, backoff_factor,
                                                                         growth_interval)
        self.good_steps = 0
        self.skipped = 0  # steps skipped since construction (or load_state_dict)

    @torch.no_grad()
    def unscale_(self, grads: list[Tensor]) -> bool:
        """Divide grads in place by the scale; True when all are finite (one host sync)."""
        grads = [g for g in grads if g is not None]
        if not grads:
            return True
        torch._foreach_mul_(grads, 1.0 / self.scale)
        finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
        return bool(finite)

    def update(self, finite: bool) -> None:
        if finite:
            self.good_steps += 1
            if self.good_steps >= self.growth_interval:
                self.scale *= self.growth_factor
                self.good_steps = 0
        else:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.skipped += 1

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, st: dict) -> None:
        self.scale, self.good_steps, self.skipped = (float(st["scale"]), int(st["good_steps"]),
                                                     int(st["skipped"]))
