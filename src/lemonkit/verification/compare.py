"""Measure losslessness: the same random inputs through source and expanded model.

Two measurements, as NOTES.md sections 9 and 12 prescribe:

- **float64**: both models in float64 with ``transformers``' float32 upcasts removed
  (RMSNorm computed in float64, sdpa attention), so the error is the expansion's alone.
  Tolerance 1e-12 when the expanded weights are stored in float64; when they are stored
  in a narrower dtype, values such as gamma * sqrt(k Ds/Dt) carry that dtype's rounding,
  and the float32 tolerance applies.
- **float32**: both models in float32 with the stock code. Tolerance
  ``max(1e-5, 5 x the source's own float32-vs-float64 error)``, and at least the
  storage dtype's epsilon for 16-bit weights (one rounding of the norm rescale).

Example:
    >>> import torch
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> import lemonkit
    >>> small = GPT2LMHeadModel(GPT2Config(n_embd=32, n_head=2, n_layer=1, vocab_size=50))
    >>> report = lemonkit.verify(small.double(), lemonkit.expand(small.double(), hidden_size=48))
    >>> report.ok
    True
"""

from __future__ import annotations

import copy
import types
from dataclasses import asdict, dataclass

import torch

from lemonkit.plan.layouts import layout_of
from lemonkit.tables import table_for

TOL_FP64 = 1e-12
TOL_FP32 = 1e-5


@dataclass
class VerifyReport:
    """Relative errors ||big(x) - small(x)|| / ||small(x)|| on the model's outputs."""

    ok: bool
    rel_error_fp64: float
    rel_error_fp32: float
    source_fp32_error: float  # the source's own float32-vs-float64 error, for scale
    tol_fp64: float
    tol_fp32: float
    max_abs_error_fp32: float
    blocks: list[dict] | None = None  # per source block, from verify_blockwise

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "LOSSLESS" if self.ok else "NOT LOSSLESS"
        if self.blocks:
            bad = [b["source_layer"] for b in self.blocks if not b["ok"]]
            verdict += f" (block by block, {len(self.blocks)} blocks, worst shown"
            verdict += f"; failing source blocks: {bad})" if bad else ")"
        return (
            f"{verdict}\n"
            f"  float64 rel error {self.rel_error_fp64:.3e}  (tolerance {self.tol_fp64:.0e})\n"
            f"  float32 rel error {self.rel_error_fp32:.3e}  (tolerance {self.tol_fp32:.1e}; "
            f"source's own float32 error {self.source_fp32_error:.1e})"
        )


def verify(
    small: torch.nn.Module,
    big: torch.nn.Module,
    *,
    batch_size: int = 2,
    seq_len: int = 16,
    seed: int = 0,
    tol_fp64: float = TOL_FP64,
) -> VerifyReport:
    """Compare ``small`` and ``big`` on random inputs in float64 and float32.

    ``tol_fp64`` loosens the float64 tolerance where the construction is exact only up to
    O(eps) (Post-LN depth: ``plan.expected_error``).
    """
    inputs = random_inputs(small.config, batch_size, seq_len, seed)
    ref64 = outputs(as_float64(small), inputs)
    err64 = expanded_error(outputs(as_float64(big), inputs), ref64)
    ref32 = outputs(as_float32(small), inputs)
    full32 = outputs(as_float32(big), inputs)
    err32 = expanded_error(full32, ref32)
    out32 = full32[..., : ref32.shape[-1]]
    own32 = rel_error(ref32.double(), ref64)
    tol32 = max(TOL_FP32, 5 * own32, tol_fp64)
    tol64 = max(TOL_FP64, tol_fp64)
    if not exact_in_storage(small, big):
        # weights narrower than float64 carry one rounding of an irrational factor
        # (gamma * sqrt(k Ds/Dt), the 1/eta stream scale, Gemma's embedding ratio)
        stored = next(big.parameters()).dtype
        tol32 = max(tol32, torch.finfo(stored).eps if stored.itemsize < 4 else 0)
        tol64 = tol32
    return VerifyReport(
        ok=bool(err64 <= tol64 and err32 <= tol32),
        rel_error_fp64=err64,
        rel_error_fp32=err32,
        source_fp32_error=own32,
        tol_fp64=tol64,
        tol_fp32=tol32,
        max_abs_error_fp32=float((out32 - ref32).abs().max()),
    )


def expanded_error(big: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative error of ``big`` against ``ref``. A headless model's output is the grown
    stream: every whole copy of the source's channels must match, extras must be zero."""
    width = ref.shape[-1]
    if big.shape[-1] == width:
        return rel_error(big, ref)
    copies = big.shape[-1] // width
    errors = [rel_error(big[..., c * width : (c + 1) * width], ref) for c in range(copies)]
    extras = big[..., copies * width :].double()
    errors.append(float(extras.norm() / ref.double().norm()) if extras.numel() else 0.0)
    return max(errors)


def exact_in_storage(small: torch.nn.Module, big: torch.nn.Module) -> bool:
    """Whether the expansion needs no rounding beyond float64's: float64 weights, or a
    hidden size that is a multiple of the source's (eta = 1) without Gemma's embedding
    ratio, or no stream at all (a CNN's channel copies). Splits are exact in any dtype."""
    if next(big.parameters()).dtype == torch.float64:
        return True
    table = table_for(small.config.model_type)
    layout = layout_of(table)
    src = layout.source(small.config, table).hidden_size
    tgt = layout.source(big.config, table).hidden_size
    if src is None:
        return True
    return tgt % src == 0 and (not table.embed_scale_sqrt_hidden or tgt == src)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def random_inputs(config, batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
    """Random token ids or pixels, as the model's task needs."""
    gen = torch.Generator().manual_seed(seed)
    if table_for(config.model_type).inputs == "pixels":
        size = getattr(config, "image_size", 32)
        shape = (batch_size, config.num_channels, size, size)
        return {"pixel_values": torch.randn(shape, generator=gen, dtype=torch.float64)}
    max_pos = getattr(config, "n_positions", None) or config.max_position_embeddings
    length = max(1, min(seq_len, max_pos - 2 - (getattr(config, "pad_token_id", 0) or 0)))
    ids = torch.randint(0, config.vocab_size, (batch_size, length), generator=gen)
    return {"input_ids": ids}


@torch.no_grad()
def outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits, or for a headless model its last hidden state (all channels: the caller
    compares the source's channels, the first block of every stream expansion)."""
    dtype = next(model.parameters()).dtype
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    if not hasattr(model, "set_attn_implementation"):  # a user-declared plain nn.Module
        out = model(*cast.values())
        return out[0] if isinstance(out, tuple) else out
    out = model(**cast)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def as_float32(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 evaluation copy with the stock code (MoE experts: the eager loop, as the
    grouped-mm kernels refuse odd sizes)."""
    return _eager_experts(copy.deepcopy(model).to(torch.float32).eval())


def _eager_experts(m: torch.nn.Module) -> torch.nn.Module:
    if getattr(m.config, "_experts_implementation", None) not in (None, "eager"):
        m.config._experts_implementation = "eager"
    return m


def as_float64(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 evaluation copy whose forward has no float32 upcasts (NOTES.md 12).

    Only this throwaway copy is patched: RMSNorm instances get a float64 forward,
    attention uses sdpa (which keeps the input dtype) instead of eager's float32 softmax,
    and MoE routers run with their float32 casts kept in float64.
    """
    m = copy.deepcopy(model).to(torch.float64).eval()
    if hasattr(m, "set_attn_implementation"):
        try:
            m.set_attn_implementation("sdpa")
        except ValueError:  # eager-only models (Gemma2's softcap): eager without upcast
            m.set_attn_implementation(_register_eager_float64())
    _eager_experts(m)  # grouped-mm kernels refuse float64
    offset = table_for(m.config.model_type).norm_offset
    for module in m.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.norm_offset = offset
            module.forward = types.MethodType(_rms_norm_float64, module)
        elif type(module).__name__.lower().endswith("router"):  # MoE routers: softmax,
            module.forward = _kept_float64(module.forward)  # logits or scores in float32
    return m


class _KeepFloat64(torch.overrides.TorchFunctionMode):
    """Within it, a float64 tensor asked for in float32 (``.float()``, ``.to(float32)``,
    ``.type(float32)``, ``softmax(..., dtype=float32)``) stays float64."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if any(isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in args):
            if func is torch.Tensor.float:
                return args[0]
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            if kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = torch.float64
        return func(*args, **kwargs)


def _kept_float64(forward):
    def run(*args, **kwargs):
        with _KeepFloat64():
            return forward(*args, **kwargs)

    return run


def _register_eager_float64() -> str:
    """Register eager attention that keeps the input dtype (no float32 softmax)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(EAGER_FLOAT64, _eager_attention_float64)
    AttentionMaskInterface.register(EAGER_FLOAT64, eager_mask)
    return EAGER_FLOAT64


EAGER_FLOAT64 = "lemonkit_eager_float64"


def _eager_attention_float64(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout=0.0,
    scaling=None,
    softcap=None,
    s_aux=None,
    **kw,
):
    """Eager attention in the input dtype; ``s_aux``: attention sinks (gpt-oss), one
    extra logit per head that takes part in the softmax and is then dropped."""
    n_rep = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(n_rep, dim=1), value.repeat_interleave(n_rep, dim=1)
    scaling = module.head_dim**-0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap is not None:
        weights = torch.tanh(weights / softcap) * softcap
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    if s_aux is not None:
        sinks = s_aux.reshape(1, -1, 1, 1).expand(*weights.shape[:-1], 1)
        weights = torch.softmax(torch.cat([weights, sinks.to(weights.dtype)], dim=-1), -1)[..., :-1]
    else:
        weights = torch.softmax(weights, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _rms_norm_float64(self, x: torch.Tensor) -> torch.Tensor:
    eps = getattr(self, "variance_epsilon", getattr(self, "eps", 1e-6))
    scale = self.weight + self.norm_offset
    return scale * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
