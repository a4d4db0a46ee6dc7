"""Qwen's mixtures of experts: Qwen2-MoE (a shared expert behind a sigmoid gate, q/k/v
biases) and Qwen3-MoE (per-head q/k norms). Both: a softmax router over
``num_experts`` with ``norm_topk_prob``, experts of their own size
(``moe_intermediate_size``), dense blocks where ``mlp_only_layers`` or
``decoder_sparse_step`` say so (``intermediate_size``).

In memory the experts are stacked (``gate_up_proj`` [E, 2F, D] = [gate; up],
``down_proj`` [E, D, F]); checkpoints save one ``gate_proj`` / ``up_proj`` /
``down_proj`` per expert.
"""

from dataclasses import replace

from lemonkit.tables.format import (
    EXPERTS,
    HIDDEN,
    MOE_MLP,
    SHARED_MLP,
    DenseLayers,
    ExpertFields,
    In,
    Out,
    Tensor,
    expert_mlp,
)
from lemonkit.tables.llama import LLAMA, QWEN3

_L = "model.layers.{i}."
_DENSE_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _moe_block(prefix: str = _L + "mlp.") -> tuple[Tensor, ...]:
    """The router and the experts, stacked (in memory) and per expert (on disk)."""
    return (
        Tensor(prefix + "gate.weight", (Out(EXPERTS), In(HIDDEN)), optional=True),  # [E, D]
        Tensor(
            prefix + "experts.gate_up_proj",
            (Out(EXPERTS), Out((MOE_MLP, MOE_MLP)), In(HIDDEN)),
            optional=True,
        ),
        Tensor(
            prefix + "experts.down_proj",
            (In(EXPERTS), Out(HIDDEN), In(MOE_MLP)),
            branch_out=True,
            optional=True,
        ),
        *expert_mlp(prefix + "experts.{e}.", ("gate_proj", "up_proj", "down_proj"), MOE_MLP),
    )


def _with_moe(base, *extra: Tensor) -> tuple[Tensor, ...]:
    """A dense table's tensors with its MLP optional (dense blocks only), plus the MoE."""
    tensors = tuple(
        replace(t, optional=True) if any(m in t.name for m in _DENSE_MLP) else t
        for t in base.tensors
    )
    return (*tensors, *_moe_block(), *extra)


_SHARED = _L + "mlp.shared_expert."

QWEN2_MOE = replace(
    LLAMA,
    model_types=("qwen2_moe",),
    classes=("Qwen2MoeForCausalLM", "Qwen2MoeModel"),
    base_classes=("Qwen2MoeModel",),
    tensors=_with_moe(
        LLAMA,
        # the shared expert: a SwiGLU MLP of its own size, scaled by sigmoid(gate x)
        Tensor(_SHARED + "gate_proj.weight", (Out(SHARED_MLP), In(HIDDEN)), optional=True),
        Tensor(_SHARED + "up_proj.weight", (Out(SHARED_MLP), In(HIDDEN)), optional=True),
        Tensor(
            _SHARED + "down_proj.weight",
            (Out(HIDDEN), In(SHARED_MLP)),
            branch_out=True,
            optional=True,
        ),
        Tensor(_L + "mlp.shared_expert_gate.weight", (None, In(HIDDEN)), optional=True),  # [1, D]
    ),
    experts=ExpertFields(
        count="num_experts",
        renorm="norm_topk_prob",
        mlp="moe_intermediate_size",
        shared_mlp="shared_expert_intermediate_size",
    ),
    note="shared expert behind a sigmoid gate (its columns split); norm_topk_prob either way",
    dense_layers=DenseLayers(index_list="mlp_only_layers", sparse_step="decoder_sparse_step"),
)

QWEN3_MOE = replace(
    QWEN3,  # per-head q/k norms share rms_norm_eps: the stream is scaled by 1/eta
    model_types=("qwen3_moe",),
    classes=("Qwen3MoeForCausalLM", "Qwen3MoeModel"),
    base_classes=("Qwen3MoeModel",),
    tensors=_with_moe(QWEN3),
    experts=ExpertFields(count="num_experts", renorm="norm_topk_prob", mlp="moe_intermediate_size"),
    note="norm_topk_prob either way; one gate / up / down per expert on disk",
    dense_layers=DenseLayers(index_list="mlp_only_layers", sparse_step="decoder_sparse_step"),
)
