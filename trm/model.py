"""The Tiny Recursive Model (TRM) with adaptive computation time (ACT), and its loss head.

A faithful re-implementation of upstream TRM (commit e7b6871, docs/fidelity.md#model): in
float32 on CPU it reproduces upstream's logits, carries, losses, metrics and gradients to ~1e-6
(tests/test_model_golden.py). Read top to bottom: config -> small layers -> block -> TRM -> loss.

    from trm.model import ModelConfig, TRM, TRMWithLoss
    head = TRMWithLoss(TRM(ModelConfig(forward_dtype="float32")))
    carry = head.model.initial_carry(batch)
    carry, loss, metrics, outputs, all_finish = head(carry, batch)   # one ACT (supervision) step
    # all_finish is a 0-dim bool tensor (no host sync inside the step: compiles as one graph)

Paper -> code names: x = input embedding, y = z_H, z = z_L, n = n_latent_steps (upstream
L_cycles), T = n_outer_cycles (H_cycles), N_sup = halt_max_steps. Sequences inside the model
are [B, P + 900, hidden] where P = puzzle_emb_len (16) prefix slots precede the 30x30 grid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trm.grids import IGNORE_LABEL_ID

# kit field -> upstream arch key (config/arch/trm.yaml + the fields pretrain.py injects)
UPSTREAM_NAMES: dict[str, str] = {
    "hidden_size": "hidden_size", "num_heads": "num_heads", "expansion": "expansion",
    "n_layers": "L_layers", "n_outer_cycles": "H_cycles", "n_latent_steps": "L_cycles",
    "halt_max_steps": "halt_max_steps", "halt_exploration_prob": "halt_exploration_prob",
    "puzzle_emb_ndim": "puzzle_emb_ndim", "puzzle_emb_len": "puzzle_emb_len",
    "num_puzzle_identifiers": "num_puzzle_identifiers", "vocab_size": "vocab_size",
    "seq_len": "seq_len", "pos_encodings": "pos_encodings", "mlp_t": "mlp_t",
    "no_act_continue": "no_ACT_continue", "rms_norm_eps": "rms_norm_eps",
    "rope_theta": "rope_theta", "forward_dtype": "forward_dtype", "loss_type": "loss_type",
}
# upstream arch keys that carry no model information for us (batch_size is implied by the data)
_UPSTREAM_IGNORED = {"name", "loss", "batch_size", "causal", "H_layers"}


@dataclass
class ModelConfig:
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    n_layers: int = 2  # blocks in the one shared net (upstream L_layers)
    n_outer_cycles: int = 3  # T (upstream H_cycles); the first T-1 run without grad
    n_latent_steps: int = 4  # n (upstream L_cycles); ARC recipe 4, upstream YAML default 6
    halt_max_steps: int = 16  # N_sup, supervision steps per example
    halt_exploration_prob: float = 0.1
    puzzle_emb_ndim: int = 512  # 0 disables the puzzle table
    puzzle_emb_len: int = 16  # prefix slots; 0 -> ceil(puzzle_emb_ndim / hidden_size)
    num_puzzle_identifiers: int = 1  # rows of the puzzle table (dataset.json)
    vocab_size: int = 12
    seq_len: int = 900
    pos_encodings: str = "rope"  # rope | learned | none
    mlp_t: bool = False  # token-mixing SwiGLU instead of attention ("TRM-MLP")
    no_act_continue: bool = True  # upstream no_ACT_continue: halt on q_halt > 0 only
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    forward_dtype: str = "bfloat16"  # activations; weights stay fp32 masters
    loss_type: str = "stablemax_cross_entropy"  # or softmax_cross_entropy

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.pos_encodings not in ("rope", "learned", "none"):
            raise ValueError(f"pos_encodings must be rope|learned|none, got {self.pos_encodings!r}")
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss_type must be one of {sorted(LOSSES)}, got {self.loss_type!r}")
        if not isinstance(getattr(torch, self.forward_dtype, None), torch.dtype):
            raise ValueError(f"forward_dtype {self.forward_dtype!r} is not a torch dtype name")
        if self.puzzle_emb_ndim > self.prefix_len * self.hidden_size:
            raise ValueError("puzzle_emb_ndim does not fit in puzzle_emb_len prefix slots")

    @property
    def prefix_len(self) -> int:
        """Puzzle prefix slots P before the grid tokens (upstream's rule for puzzle_emb_len=0)."""
        return self.puzzle_emb_len or -(self.puzzle_emb_ndim // -self.hidden_size)

    @classmethod
    def from_upstream(cls, arch: dict) -> ModelConfig:
        """Build from an upstream arch dict (all_config.yaml `arch:` or the model's config dict).

        Accepts upstream or kit names; ignores name/batch_size/causal/H_layers; takes loss_type
        from a `loss:` sub-dict. Unknown keys are warned about and dropped.
        """
        to_kit = {up: kit for kit, up in UPSTREAM_NAMES.items()}
        kwargs, unknown = {}, []
        for key, value in arch.items():
            if key == "loss" and isinstance(value, dict) and "loss_type" in value:
                kwargs["loss_type"] = value["loss_type"]
            elif key in _UPSTREAM_IGNORED:
                continue
            elif key in to_kit or key in UPSTREAM_NAMES:
                kwargs[to_kit.get(key, key)] = value
            else:
                unknown.append(key)
        if unknown:
            warnings.warn(f"ModelConfig.from_upstream: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**kwargs)

    def to_upstream(self) -> dict:
        """The upstream arch dict (names as in config/arch/trm.yaml); from_upstream inverts it."""
        out = {UPSTREAM_NAMES[k]: v for k, v in asdict(self).items() if k != "loss_type"}
        out.update(name="recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", H_layers=0,
                   loss={"name": "losses@ACTLossHead", "loss_type": self.loss_type})
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------------
# Small layers: init, casted linear/embedding, RMSNorm, RoPE, SwiGLU, attention


def trunc_normal_(t: Tensor, std: float, bound: float = 2.0) -> Tensor:
    """JAX-style truncated normal at +-bound sigma, std corrected so the *realised* std is `std`."""
    if std == 0:
        return t.zero_()
    with torch.no_grad():
        # variance of a unit normal truncated to [-b, b]: 1 - 2b*pdf(b)/Z, Z = erf(b/sqrt2)
        z = math.erf(bound / math.sqrt(2))
        pdf = math.exp(-0.5 * bound**2) / math.sqrt(2 * math.pi)
        real_std = std / math.sqrt(1 - 2 * bound * pdf / z)
        t.uniform_(-z, z).erfinv_().mul_(math.sqrt(2) * real_std)  # inverse-CDF sampling
        return t.clamp_(-bound * real_std, bound * real_std)


class CastedLinear(nn.Module):
    """Linear with fp32 master weights cast to the input's dtype at each call (no autocast)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(d_out, d_in), std=d_in**-0.5))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table in fp32, looked up after casting to the compute dtype."""

    def __init__(self, n: int, dim: int, std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.weight = nn.Parameter(trunc_normal_(torch.empty(n, dim), std=std))

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight.to(self.cast_to))


def rms_norm(x: Tensor, eps: float) -> Tensor:
    """Weightless RMSNorm over the last dim, computed in fp32 and cast back."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope_cos_sin(head_dim: int, n_pos: int, theta: float) -> tuple[Tensor, Tensor]:
    """fp32 tables [n_pos, head_dim]: cos of cat(freqs, freqs), and sin with its first half negated.

    Rotate-half RoPE (HF-Llama, not interleaved): x*cos + cat(-x2, x1)*sin. Folding the minus into
    the table gives the same numbers exactly with one op less: x*cos + cat(x2, x1)*sin_signed.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # [n_pos, hd/2]
    return torch.cat((freqs, freqs), dim=-1).cos(), torch.cat((-freqs.sin(), freqs.sin()), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """x [B, S, heads, hd]; tables [S, hd]. Computed in fp32, cast back."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    swapped = torch.cat((x2, x1), dim=-1)
    return (xf * cos.unsqueeze(-2) + swapped * sin_signed.unsqueeze(-2)).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, expansion: float):
        super().__init__()
        inner = -(round(expansion * dim * 2 / 3) // -256) * 256  # round up to a multiple of 256
        self.gate_up_proj = CastedLinear(dim, 2 * inner)  # output chunks: gate, then up
        self.down_proj = CastedLinear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Attention(nn.Module):
    """Non-causal multi-head self-attention (no mask: PAD cells are attended to), fused qkv."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv_proj = CastedLinear(dim, 3 * dim)  # output laid out [q heads, k heads, v heads]
        self.o_proj = CastedLinear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        B, S, _ = x.shape
        qkv = self.qkv_proj(x).view(B, S, 3 * self.num_heads, self.head_dim)  # [B, S, 3H, hd]
        qk, v = qkv.split((2 * self.num_heads, self.num_heads), dim=2)  # q and k heads, then v
        if rope is not None:
            qk = apply_rope(qk, *rope)  # q and k together: elementwise, so identical to one by one
        q, k = qk.split(self.num_heads, dim=2)  # each [B, S, H, hd]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        # [B, H, S, hd] -> [B, S, H*hd]; reshape, not view: SDPA backends differ in output layout
        return self.o_proj(out.transpose(1, 2).reshape(B, S, -1))


class Block(nn.Module):
    """Post-norm transformer block: h = norm(h + mix(h)); h = norm(h + mlp(h))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.eps = cfg.rms_norm_eps
        if cfg.mlp_t:  # token mixing: a SwiGLU over the sequence axis (width P + seq_len)
            self.mlp_t = SwiGLU(cfg.prefix_len + cfg.seq_len, cfg.expansion)
        else:
            self.attn = Attention(cfg.hidden_size, cfg.num_heads)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)

    def forward(self, h: Tensor, rope) -> Tensor:
        if hasattr(self, "mlp_t"):
            ht = h.transpose(1, 2)  # [B, D, S]; the norm is over S here, as upstream
            h = rms_norm(ht + self.mlp_t(ht), self.eps).transpose(1, 2)
        else:
            h = rms_norm(h + self.attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)


class RecurrentNet(nn.Module):
    """The single shared net (upstream `L_level`): net(h, inj) = blocks(h + inj). It updates z_L
    *and* z_H."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))

    def forward(self, h: Tensor, injection: Tensor, rope) -> Tensor:
        h = h + injection
        for block in self.blocks:
            h = block(h, rope)
        return h


class PuzzleEmbedding(nn.Module):
    """Per-puzzle vectors as a *sparse* table trained by SparseSignSGD (trm.optim), not autograd.

    `weights` [N, D] fp32 is a persistent buffer (zero init; row 0 = "<blank>" stays zero). In
    train mode with grad enabled the batch's rows are copied into `local_weights` [B, D], a leaf
    whose .grad (one row per batch row, duplicates not merged) the optimizer reads together with
    `local_ids` [B]. B is fixed after the first call, as upstream; call release_local() to change it.
    Otherwise (eval, no_grad) rows are read from `weights` directly.
    """

    def __init__(self, num_ids: int, dim: int, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.register_buffer("weights", torch.zeros(num_ids, dim), persistent=True)
        self.local_weights: Tensor | None = None  # plain attributes: module.to() would make
        self.local_ids: Tensor | None = None  # a non-leaf copy of a grad-requiring buffer

    def release_local(self) -> None:
        self.local_weights = self.local_ids = None

    def ensure_local(self, B: int) -> None:
        """Allocate the train-time leaf for B rows (once: the batch size is then fixed)."""
        lw = self.local_weights
        if lw is None or lw.device != self.weights.device:
            self.local_weights = torch.zeros(B, self.weights.shape[1], device=self.weights.device,
                                             requires_grad=True)
            self.local_ids = torch.zeros(B, dtype=torch.int32, device=self.weights.device)
        elif lw.shape[0] != B:
            raise ValueError(
                f"puzzle embedding: train batch size changed from {lw.shape[0]} to {B}; the sparse "
                "table needs a fixed local batch (drop the last partial batch, or call "
                "model.puzzle_emb.release_local() after an optimizer step to start a new size)")

    def forward(self, ids: Tensor) -> Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.weights[ids].to(self.cast_to)
        self.ensure_local(ids.shape[0])
        with torch.no_grad():
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.cast_to)


# ---------------------------------------------------------------------------------------------
# The model: one ACT step = T outer cycles of (n latent updates of z_L, one update of z_H)


@dataclass
class Carry:
    """State carried between ACT steps (and across batches): all tensors detached."""

    z_H: Tensor  # [B, P+S, D] forward_dtype, the answer state (paper y)
    z_L: Tensor  # [B, P+S, D] forward_dtype, the latent (paper z)
    steps: Tensor  # [B] int32, ACT steps done on the current example
    halted: Tensor  # [B] bool; halted rows are reset and take new data on the next call
    current_data: dict[str, Tensor]  # the example each row is working on


class TRM(nn.Module):
    """TRM with ACT (upstream TinyRecursiveReasoningModel_ACTV1, inner model folded in)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.forward_dtype = getattr(torch, cfg.forward_dtype)
        self.prefix_len = P = cfg.prefix_len
        D = cfg.hidden_size
        self.embed_scale = math.sqrt(D)  # inputs (prefix included) are scaled by sqrt(hidden)
        self.embed_tokens = CastedEmbedding(cfg.vocab_size, D, std=1 / self.embed_scale,
                                            cast_to=self.forward_dtype)
        self.lm_head = CastedLinear(D, cfg.vocab_size)
        self.q_head = CastedLinear(D, 2, bias=True)  # (q_halt, q_continue) read from z_H slot 0
        with torch.no_grad():  # start far from halting: q = -5 for every input
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        if cfg.puzzle_emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim,
                                              self.forward_dtype)
        if cfg.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(P + cfg.seq_len, D, std=1 / self.embed_scale,
                                             cast_to=self.forward_dtype)
        elif cfg.pos_encodings == "rope":
            cos, sin = rope_cos_sin(D // cfg.num_heads, P + cfg.seq_len, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)  # [P+S, hd] fp32
            self.register_buffer("rope_sin", sin, persistent=False)  # sign-folded, see rope_cos_sin
        self.net = RecurrentNet(cfg)
        # fixed (not learned) start states, persistent so checkpoints carry them
        self.register_buffer("H_init", trunc_normal_(torch.empty(D, dtype=self.forward_dtype), 1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(D, dtype=self.forward_dtype), 1.0))

    def input_embedding(self, inputs: Tensor, puzzle_ids: Tensor) -> Tensor:
        """x [B, P+S, D]: puzzle vector in the prefix (slot 0 when ndim == hidden), then tokens."""
        cfg, B = self.config, inputs.shape[0]
        tok = self.embed_tokens(inputs.to(torch.int32))  # [B, S, D]
        if cfg.puzzle_emb_ndim > 0:
            pe = self.puzzle_emb(puzzle_ids)  # [B, ndim]
            pe = F.pad(pe, (0, self.prefix_len * cfg.hidden_size - pe.shape[-1]))  # zero slots
            prefix = pe.view(B, self.prefix_len, cfg.hidden_size)
        else:  # no table: keep the prefix slots (zeros) so positions and q_head's slot 0 stay put
            prefix = tok.new_zeros(B, self.prefix_len, cfg.hidden_size)
        x = torch.cat((prefix, tok), dim=1)  # [B, P+S, D]
        if cfg.pos_encodings == "learned":
            x = 0.707106781 * (x + self.embed_pos.weight.to(self.forward_dtype))  # upstream's 1/sqrt2
        return self.embed_scale * x

    def recursion(self, z_H: Tensor, z_L: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Deep recursion of one ACT step; only the last outer cycle is back-propagated through."""
        cfg = self.config
        rope = (self.rope_cos, self.rope_sin) if cfg.pos_encodings == "rope" else None
        for cycle in range(cfg.n_outer_cycles):
            with torch.set_grad_enabled(torch.is_grad_enabled() and cycle == cfg.n_outer_cycles - 1):
                inj = z_H + x  # constant over the latent steps: z_L <- net(z_L, z_H + x)
                for _ in range(cfg.n_latent_steps):
                    z_L = self.net(z_L, inj, rope)
                z_H = self.net(z_H, z_L, rope)  # z_H <- net(z_H, z_L)
        return z_H, z_L

    def step(self, z_H: Tensor, z_L: Tensor, data: dict[str, Tensor]):
        """One inner step: -> new (z_H, z_L) detached, logits [B, S, V], q logits [B, 2] fp32."""
        x = self.input_embedding(data["inputs"], data["puzzle_identifiers"])
        z_H, z_L = self.recursion(z_H, z_L, x)
        logits = self.lm_head(z_H[:, self.prefix_len:])  # no final norm; prefix slots dropped
        q = self.q_head(z_H[:, 0]).to(torch.float32)
        return z_H.detach(), z_L.detach(), logits, q

    def initial_carry(self, batch: dict[str, Tensor]) -> Carry:
        """All rows 'halted', so the first forward resets them and loads the batch."""
        B, dev = batch["inputs"].shape[0], batch["inputs"].device
        shape = (B, self.prefix_len + self.config.seq_len, self.config.hidden_size)
        z = torch.zeros(shape, dtype=self.forward_dtype, device=dev)
        return Carry(z_H=z, z_L=z.clone(), steps=torch.zeros(B, dtype=torch.int32, device=dev),
                     halted=torch.ones(B, dtype=torch.bool, device=dev),
                     current_data={k: torch.zeros_like(v) for k, v in batch.items()})

    def forward(self, carry: Carry, batch: dict[str, Tensor]) -> tuple[Carry, dict[str, Tensor]]:
        cfg = self.config
        if carry.halted.shape[0] != batch["inputs"].shape[0]:
            raise ValueError(f"carry has {carry.halted.shape[0]} rows but the batch has "
                             f"{batch['inputs'].shape[0]}; the ACT carry needs a fixed batch size")
        halted = carry.halted
        # halted rows restart from the fixed inits and take the new example; others keep theirs
        z_H = torch.where(halted.view(-1, 1, 1), self.H_init, carry.z_H)
        z_L = torch.where(halted.view(-1, 1, 1), self.L_init, carry.z_L)
        steps = torch.where(halted, 0, carry.steps)
        data = {k: torch.where(halted.view((-1,) + (1,) * (v.ndim - 1)), batch[k], v)
                for k, v in carry.current_data.items()}

        z_H, z_L, logits, q = self.step(z_H, z_L, data)
        outputs = {"logits": logits, "q_halt_logits": q[..., 0], "q_continue_logits": q[..., 1]}

        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= cfg.halt_max_steps
            halted = is_last  # eval: every row runs exactly halt_max_steps steps
            if self.training and cfg.halt_max_steps > 1:
                q_halt, q_cont = outputs["q_halt_logits"], outputs["q_continue_logits"]
                halted = halted | ((q_halt > 0) if cfg.no_act_continue else (q_halt > q_cont))
                # exploration: some rows must run at least U{2..N_sup} steps before halting
                explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=cfg.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                if not cfg.no_act_continue:
                    # Q-learning target for q_continue, bootstrapped from the next step's q values.
                    # Upstream's version of this branch crashes (unpacks 5 values from 3); this is
                    # the evident intent: sigmoid(q_halt' if last step else max(q_halt', q_cont')).
                    *_, q_next = self.step(z_H, z_L, data)
                    nxt = torch.where(is_last, q_next[..., 0], q_next.max(dim=-1).values)
                    outputs["target_q_continue"] = torch.sigmoid(nxt)
        return Carry(z_H, z_L, steps, halted, data), outputs


# ---------------------------------------------------------------------------------------------
# Loss head (upstream ACTLossHead)


def stablemax_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Per-token CE [B, S] under stablemax, in float64: s(x) = 1/(1-x) for x<0, x+1 otherwise."""
    x = logits.to(torch.float64)
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    logp = torch.log(s / s.sum(-1, keepdim=True))
    picked = logp.gather(-1, torch.where(mask, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return -torch.where(mask, picked, 0)


def softmax_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    ce = F.cross_entropy(logits.float().flatten(0, -2), labels.long().flatten(),
                         ignore_index=IGNORE_LABEL_ID, reduction="none")
    return ce.view(labels.shape)


LOSSES = {"stablemax_cross_entropy": stablemax_cross_entropy, "softmax_cross_entropy": softmax_cross_entropy}


class TRMWithLoss(nn.Module):
    """Wraps TRM: one ACT step plus its loss and metrics.

    loss = sum_rows mean_tokens CE + 0.5 * (q_halt BCE [+ q_continue BCE]), over ALL rows at every
    step (upstream back-propagates loss / global_batch_size). Metrics are sums over rows that
    halted this step and have at least one label: count, accuracy (per-row token accuracy, summed),
    exact_accuracy, q_halt_accuracy, steps; plus lm_loss, q_halt_loss (sums over all rows).
    """

    def __init__(self, model: TRM, loss_type: str | None = None):
        super().__init__()
        self.model = model
        self.loss_fn = LOSSES[loss_type or model.config.loss_type]

    def initial_carry(self, batch: dict[str, Tensor]) -> Carry:
        return self.model.initial_carry(batch)

    def forward(self, carry: Carry, batch: dict[str, Tensor]):
        carry, out = self.model(carry, batch)
        labels = carry.current_data["labels"]  # labels of the examples actually worked on
        logits, q_halt = out["logits"], out["q_halt_logits"]
        with torch.no_grad():
            preds = logits.argmax(-1)  # [B, S]
            mask = labels != IGNORE_LABEL_ID
            counts = mask.sum(-1)  # [B] supervised cells per row
            divisor = counts.clamp_min(1).unsqueeze(-1)
            correct = mask & (preds == labels)
            seq_correct = correct.sum(-1) == counts  # EOS labels count: the shape is learned too
            valid = carry.halted & (counts > 0)
            metrics = {
                "count": valid.sum(),
                "accuracy": torch.where(valid, (correct.to(torch.float32) / divisor).sum(-1), 0).sum(),
                "exact_accuracy": (valid & seq_correct).sum(),
                "q_halt_accuracy": (valid & ((q_halt >= 0) == seq_correct)).sum(),
                "steps": torch.where(valid, carry.steps, 0).sum(),
            }
        lm_loss = (self.loss_fn(logits, labels, mask) / divisor).sum()  # per-sequence mean, summed
        q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_correct.to(q_halt.dtype),
                                                         reduction="sum")
        metrics.update(lm_loss=lm_loss.detach(), q_halt_loss=q_halt_loss.detach())
        q_loss = q_halt_loss
        if "target_q_continue" in out:
            q_cont_loss = F.binary_cross_entropy_with_logits(
                out["q_continue_logits"], out["target_q_continue"], reduction="sum")
            metrics["q_continue_loss"] = q_cont_loss.detach()
            q_loss = q_loss + q_cont_loss
        loss = lm_loss + 0.5 * q_loss
        outputs = {"preds": preds, "logits": logits.detach(), "q_halt_logits": q_halt.detach(),
                   "q_continue_logits": out["q_continue_logits"].detach()}
        # a tensor, not bool(): converting here would sync with the device on every ACT step and
        # break a compiled graph; callers that branch on it convert (trm.evaluate)
        return carry, loss, metrics, outputs, carry.halted.all()


# ---------------------------------------------------------------------------------------------
# Helpers


def pick_dtype(device: torch.device | str, requested: str | torch.dtype | None = None) -> torch.dtype:
    """Compute dtype for `device`.

    Rule: an explicit float32 request always wins. On CUDA, compute capability >= 8.0 (A100, L4,
    H100) gives bfloat16 for None/"auto"/"bfloat16"; below 8.0 (T4 sm_75, P100 sm_60) it is never
    bfloat16 -- "auto" and "bfloat16" give float16 (a bf16 request is downgraded with a warning).
    The gate is get_device_capability(), not is_bf16_supported(), which says True on a T4 because
    it counts emulation. CPU (and other devices) give float32 unless a dtype is requested
    explicitly (bf16 on CPU is only fast with AMX). "float16" is honoured on CUDA.
    """
    aliases = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16",
               "half": "float16"}
    if isinstance(requested, torch.dtype):
        requested = str(requested).removeprefix("torch.")
    req = aliases.get(requested, requested) if requested else "auto"
    if req not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"unknown dtype request {requested!r}")
    device = torch.device(device)
    if req == "float32":
        return torch.float32
    if device.type != "cuda":
        if req == "bfloat16" and device.type == "cpu" and not _cpu_has_native_bf16():
            warnings.warn("bfloat16 on a CPU without AMX / AVX512-BF16: matmuls run ~10-20x slower "
                          "than float32 here", stacklevel=2)
        return torch.float32 if req == "auto" else getattr(torch, req)
    major, _ = torch.cuda.get_device_capability(device)
    if major >= 8:
        return torch.bfloat16 if req == "auto" else getattr(torch, req)
    if req == "bfloat16":
        warnings.warn(f"bfloat16 requested on CUDA cc {major}.x (no native bf16): using float16",
                      stacklevel=2)
    return torch.float16


def _cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 (torch.cpu's private probes; True when they are missing: no false alarms)."""
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    probes = [p for p in probes if p is not None]
    return not probes or any(p() for p in probes)


def compile_enabled(setting: bool | None, device: torch.device | str) -> bool:
    """A compile setting: True / False, or None = auto (on for CUDA, as upstream compiles unless
    DISABLE_COMPILE: 2.1x the eager training speed on an H200; off elsewhere: on CPU compiling
    costs minutes and gains little)."""
    return bool(setting) if setting is not None else torch.device(device).type == "cuda"


def compile_net(model: TRM, setting: bool | None, device: torch.device | str) -> bool:
    """torch.compile the recurrent net in place when `setting` says so (compile_enabled); returns
    whether it did. Only the net: state-dict keys stay clean, the ACT bookkeeping stays eager, and
    the graph is reused by all H*(L+1) applications of every step."""
    if compile_enabled(setting, device):
        model.net.compile()
        return True
    return False


def _carry_tensors(carry: Carry) -> list[Tensor]:
    """The carry's tensors in a fixed order (the data dict by key)."""
    data = carry.current_data
    return [carry.z_H, carry.z_L, carry.steps, carry.halted, *(data[k] for k in sorted(data))]


class CompiledStep:
    """One whole ACT step -- the TRM's bookkeeping, the net and, for a TRMWithLoss, the loss -- as
    one compiled graph, replayed as CUDA graphs on CUDA (torch.compile mode "reduce-overhead"):
    the 15 net applications of a step and the ACT bookkeeping between them launch as one graph,
    which removes the host gaps between kernels (docs/performance.md).

        step = CompiledStep(head)                      # head: TRMWithLoss (training) or TRM (evaluation)
        carry, loss, metrics, outputs, finished = step(carry, batch)   # same results as head(carry, batch)

    A CUDA graph replays fixed memory addresses, so the step's varying inputs live in static buffers
    owned here: the ACT carry and the batch. Each call copies its carry and batch into them (the
    carry is skipped when the caller passes back the one it got), runs the graph and copies the new
    carry back in. The returned carry IS the static buffer, overwritten by the next call: a caller
    that keeps several carries (micro-batch slots) clones it. In training the puzzle table's
    per-batch leaf (PuzzleEmbedding.local_weights / local_ids) is allocated before the first call and
    is static too (the graph writes it), and gradients must accumulate into .grad buffers allocated
    outside the graph (trm.engine keeps them and zeroes them in place): a .grad the backward graph
    allocated is overwritten by the next replay. Every output is overwritten by the next call, so
    use it (backward, sums, clones) before calling again.

    The batch size is fixed by the first call (a new one allocates and compiles again). Off CUDA the
    same code compiles without graphs (the CPU test of this path).
    """

    backend = "inductor"  # the default; tests set "aot_eager" to trace without code generation

    def __init__(self, module: nn.Module, backend: str | None = None):
        self.module = module
        self.trm: TRM = getattr(module, "model", module)
        backend = backend or CompiledStep.backend
        kw = {"mode": "reduce-overhead"} if backend == "inductor" else {}
        # fullgraph: a graph break would split the step and put host work back between the pieces
        self.fn = torch.compile(module, backend=backend, fullgraph=True, dynamic=False, **kw)
        self.static: list[Tensor] = []  # the carry's buffers, in _carry_tensors order
        self.keys: list[str] = []  # the carry's data keys, sorted
        self.batch: dict[str, Tensor] | None = None

    def _carry(self) -> Carry:
        """A Carry over the static buffers (a new object: a caller may reassign its fields)."""
        z_H, z_L, steps, halted, *data = self.static
        return Carry(z_H, z_L, steps, halted, dict(zip(self.keys, data)))

    def _allocate(self, carry: Carry, batch: dict[str, Tensor]) -> None:
        self.static = [t.clone() for t in _carry_tensors(carry)]
        self.keys = sorted(carry.current_data)
        self.batch = {k: v.clone() for k, v in batch.items()}
        static = self.static + list(self.batch.values())
        pe = getattr(self.trm, "puzzle_emb", None)
        if pe is not None and self.trm.training and torch.is_grad_enabled():
            pe.ensure_local(batch["inputs"].shape[0])
            static += [pe.local_weights, pe.local_ids]
        for t in static:
            torch._dynamo.mark_static_address(t)

    def __call__(self, carry: Carry, batch: dict[str, Tensor]):
        if self.batch is None or any(self.batch[k].shape != v.shape for k, v in batch.items()):
            self._allocate(carry, batch)
        else:
            with torch.no_grad():
                for k, v in batch.items():
                    self.batch[k].copy_(v)
                for dst, src in zip(self.static, _carry_tensors(carry)):
                    if dst is not src:  # the carry this returned last time needs no copy
                        dst.copy_(src)
        torch.compiler.cudagraph_mark_step_begin()  # a new step: the previous step's outputs may go
        new, *rest = self.fn(self._carry(), self.batch)
        with torch.no_grad():
            for dst, src in zip(self.static, _carry_tensors(new)):
                dst.copy_(src)
        return (self._carry(), *rest)


def count_parameters(model: nn.Module) -> int:
    """nn.Parameter elements, as upstream logs num_params (6,829,058 for ARC). The puzzle table and
    H_init/L_init are buffers and not counted (the table holds ~0.6 B values at ARC-AGI-2 scale)."""
    return sum(p.numel() for p in model.parameters())
