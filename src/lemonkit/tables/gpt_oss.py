"""gpt-oss: attention sinks (one learned logit per head), biased experts with a clamped
SwiGLU over interleaved [gate_j, up_j] columns, a biased router whose softmax runs over
the selected experts, alternating sliding and full attention (``layer_types``).

Tensors are stacked in memory and on disk alike: ``gate_up_proj`` [E, D, 2F] (stored
[in, out]: x @ W), ``down_proj`` [E, F, D]. Checkpoints quantised to MXFP4
(``*_blocks`` / ``*_scales``) are not read: dequantise them first.
"""

from dataclasses import replace

from lemonkit.tables.format import (
    EXPERTS,
    HEADS,
    HIDDEN,
    MLP,
    DerivedSpace,
    ExpertFields,
    In,
    Out,
    Tensor,
)
from lemonkit.tables.llama import LLAMA

_L = "model.layers.{i}."
_E = _L + "mlp.experts."
PER_HEAD = "per_head"  # one value per query head (the sinks)
MLP_PAIRS = "mlp_pairs"  # interleaved [gate_j, up_j] columns (unit: 2)

GPT_OSS = replace(
    LLAMA,
    model_types=("gpt_oss",),
    classes=("GptOssForCausalLM", "GptOssModel"),
    base_classes=("GptOssModel",),
    tensors=(
        *(t for t in LLAMA.tensors if ".mlp." not in t.name),
        Tensor(_L + "self_attn.sinks", (Out(PER_HEAD),)),  # [H]: copied with their heads
        Tensor(_L + "mlp.router.weight", (Out(EXPERTS), In(HIDDEN))),  # [E, D]
        Tensor(_L + "mlp.router.bias", (Out(EXPERTS),)),
        Tensor(_E + "gate_up_proj", (Out(EXPERTS), In(HIDDEN), Out(MLP_PAIRS))),  # [E, D, 2F]
        Tensor(_E + "gate_up_proj_bias", (Out(EXPERTS), Out(MLP_PAIRS))),
        Tensor(_E + "down_proj", (In(EXPERTS), In(MLP), Out(HIDDEN)), branch_out=True),
        Tensor(_E + "down_proj_bias", (In(EXPERTS), Out(HIDDEN)), branch_out=True),
    ),
    # the softmax over the selected logits gives m copies of an expert 1/m each
    experts=ExpertFields(count="num_local_experts"),
    note=(
        "attention sinks copied with their heads; biased experts over interleaved "
        "[gate, up] pairs; MXFP4 checkpoints refused (dequantise first)"
    ),
    derived=(DerivedSpace(PER_HEAD, HEADS), DerivedSpace(MLP_PAIRS, MLP, unit_size=2)),
)
