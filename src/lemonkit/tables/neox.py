"""GPT-NeoX / Pythia (fused per-head qkv, partial rotary, parallel residual) and Phi
(parallel attention and MLP from one LayerNorm, biased untied head, optional q/k norms).

NeoX's ``query_key_value`` rows are laid out per head, [q_h; k_h; v_h] (3 x head_dim rows
per head), so they live in ``HEADS_QKV``: the head map with 3 x head_dim channels a unit
(treating them as [Q; K; V] is wrong, rel 0.63: NOTES.md 13).
"""

from dataclasses import replace

from lemonkit.tables.format import (
    HEADS,
    HEADS_QKV,
    HIDDEN,
    KV_HEADS,
    MLP,
    STANDARD_FIELDS,
    ArchTable,
    In,
    Out,
    Tensor,
    layer_norm,
    linear,
)

_N = "gpt_neox."
_L = _N + "layers.{i}."

GPT_NEOX = ArchTable(
    model_types=("gpt_neox",),
    classes=("GPTNeoXForCausalLM", "GPTNeoXModel"),
    config=STANDARD_FIELDS,
    base_prefix=_N,
    base_classes=("GPTNeoXModel",),
    norm="layernorm",
    task="causal_lm",
    tie_embeddings=("lm_head.weight", _N + "embed_in.weight"),
    vocab=(_N + "embed_in.weight", "lm_head.weight", "embed_out.weight"),
    aliases=(("embed_out.weight", "lm_head.weight"),),  # its name in saved checkpoints
    tensors=(
        Tensor(_N + "embed_in.weight", (None, Out(HIDDEN))),
        *layer_norm(_L + "input_layernorm"),
        *layer_norm(_L + "post_attention_layernorm"),
        *linear(_L + "attention.query_key_value", HEADS_QKV, HIDDEN),  # [H * 3d, D]
        *linear(_L + "attention.dense", HIDDEN, HEADS, branch_out=True),
        *linear(_L + "mlp.dense_h_to_4h", MLP, HIDDEN),
        *linear(_L + "mlp.dense_4h_to_h", HIDDEN, MLP, branch_out=True),
        # buffers some older Pythia checkpoints carry; no axis grows
        Tensor(_L + "attention.bias", (None, None, None, None), optional=True),
        Tensor(_L + "attention.masked_bias", (), optional=True),
        Tensor(_L + "attention.rotary_emb.inv_freq", (None,), optional=True),
        *layer_norm(_N + "final_layer_norm", tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),  # [vocab, D]
    ),
)

_P = "model."
_PL = _P + "layers.{i}."

PHI = ArchTable(
    model_types=("phi",),
    classes=("PhiForCausalLM", "PhiModel"),
    config=replace(STANDARD_FIELDS, kv_heads="num_key_value_heads"),
    base_prefix=_P,
    base_classes=("PhiModel",),
    norm="layernorm",
    task="causal_lm",
    tie_embeddings=("lm_head.weight", _P + "embed_tokens.weight"),
    vocab=(_P + "embed_tokens.weight", "lm_head.weight", "lm_head.bias"),
    fixed_eps=True,  # layer_norm_eps also serves the optional per-head q/k LayerNorms
    tensors=(
        Tensor(_P + "embed_tokens.weight", (None, Out(HIDDEN))),
        *layer_norm(_PL + "input_layernorm"),
        *linear(_PL + "self_attn.q_proj", HEADS, HIDDEN),
        *linear(_PL + "self_attn.k_proj", KV_HEADS, HIDDEN),
        *linear(_PL + "self_attn.v_proj", KV_HEADS, HIDDEN),
        *linear(_PL + "self_attn.dense", HIDDEN, HEADS, branch_out=True),
        *layer_norm(_PL + "self_attn.q_layernorm", space=None, optional=True),
        *layer_norm(_PL + "self_attn.k_layernorm", space=None, optional=True),
        *linear(_PL + "mlp.fc1", MLP, HIDDEN),
        *linear(_PL + "mlp.fc2", HIDDEN, MLP, branch_out=True),
        *layer_norm(_P + "final_layernorm", tied_head_norm=True),
        Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),
        Tensor("lm_head.bias", (None,)),
    ),
)
