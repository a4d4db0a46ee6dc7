"""Phi-3 (``Phi3ForCausalLM``): LLaMA's block with fused projections.

``qkv_proj`` is [Q; K; V] (all query heads, then the KV heads' keys, then their values)
and ``gate_up_proj`` is [gate; up]: each fused axis is a tuple of spaces, grown segment by
segment (the gate and up halves share one MLP map, so SwiGLU pairs stay together).

Example:
    >>> PHI3.spec("model.layers.{i}.mlp.gate_up_proj.weight").axes[0]
    Out(space=('mlp', 'mlp'))
"""

from dataclasses import replace

from lemonkit.tables.format import HEADS, HIDDEN, KV_HEADS, MLP, Gamma, In, Out, Tensor
from lemonkit.tables.llama import LLAMA

_L = "model.layers.{i}."

PHI3 = replace(
    LLAMA,
    model_types=("phi3",),
    classes=("Phi3ForCausalLM", "Phi3Model"),
    base_classes=("Phi3Model",),
    tensors=(
        Tensor("model.embed_tokens.weight", (None, Out(HIDDEN))),
        Tensor(_L + "input_layernorm.weight", (Gamma(HIDDEN),)),
        Tensor(_L + "self_attn.qkv_proj.weight", (Out((HEADS, KV_HEADS, KV_HEADS)), In(HIDDEN))),
        Tensor(_L + "self_attn.o_proj.weight", (Out(HIDDEN), In(HEADS)), branch_out=True),
        Tensor(_L + "post_attention_layernorm.weight", (Gamma(HIDDEN),)),
        Tensor(_L + "mlp.gate_up_proj.weight", (Out((MLP, MLP)), In(HIDDEN))),  # [2F, D]
        Tensor(_L + "mlp.down_proj.weight", (Out(HIDDEN), In(MLP)), branch_out=True),
        Tensor("model.norm.weight", (Gamma(HIDDEN),), tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),
    ),
    note="fused qkv_proj [Q; K; V] and gate_up_proj [gate; up], grown segment by segment",
)
