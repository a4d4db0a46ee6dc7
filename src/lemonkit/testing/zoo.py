"""Small random models of every supported architecture, built from configs (no downloads).

Used by the tests, the demo and the error table.

Example:
    >>> model = build("llama", hidden=32, heads=2, kv=1)
    >>> type(model).__name__, model.config.hidden_size
    ('LlamaForCausalLM', 32)
"""

from __future__ import annotations

import torch
import transformers as tf

VOCAB = 97


def gpt2(hidden=64, heads=4, layers=2, **kw):
    cfg = tf.GPT2Config(
        n_embd=hidden,
        n_head=heads,
        n_layer=layers,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        **kw,
    )
    return tf.GPT2LMHeadModel(cfg)


def _standard(
    cfg_cls, model_cls, hidden=64, heads=4, layers=2, mlp=96, mlp_field="intermediate_size", **kw
):
    """A model whose config uses the common field names (hidden_size, ...)."""
    cfg = cfg_cls(
        hidden_size=hidden,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        **{mlp_field: mlp},
        **kw,
    )
    return model_cls(cfg)


_LM = dict(vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)


def _llama_like(cfg_cls, model_cls, kv=2, **kw):
    return _standard(cfg_cls, model_cls, num_key_value_heads=kv, pad_token_id=None, **_LM, **kw)


def llama(**kw):
    return _llama_like(tf.LlamaConfig, tf.LlamaForCausalLM, **kw)


def mistral(**kw):
    return _llama_like(tf.MistralConfig, tf.MistralForCausalLM, **kw)


def qwen2(**kw):
    return _llama_like(tf.Qwen2Config, tf.Qwen2ForCausalLM, **kw)


def qwen3(**kw):
    kw.setdefault("head_dim", 16)  # Qwen3's config default is 128
    return _llama_like(tf.Qwen3Config, tf.Qwen3ForCausalLM, **kw)


def mixtral(**kw):
    kw.update(num_local_experts=4, num_experts_per_tok=2)
    return _llama_like(tf.MixtralConfig, tf.MixtralForCausalLM, **kw)


def qwen2_moe(**kw):
    """Layer 0 dense (mlp_only_layers), the others MoE with a shared expert; top-k weights
    not renormalised (the family's default)."""
    kw = {"moe_intermediate_size": 48, "shared_expert_intermediate_size": 80, **kw}
    kw.update(num_experts=4, num_experts_per_tok=2, mlp_only_layers=[0])
    return _llama_like(tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM, **kw)


def qwen3_moe(**kw):
    """Every other layer MoE (decoder_sparse_step 2), top-k weights renormalised."""
    kw = {"head_dim": 16, "moe_intermediate_size": 48, **kw}
    kw.update(num_experts=4, num_experts_per_tok=2, decoder_sparse_step=2, norm_topk_prob=True)
    return _llama_like(tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM, **kw)


def gpt_oss(mlp=48, **kw):
    kw = {"head_dim": 16, "sliding_window": 4, **kw}
    kw.update(num_local_experts=4, num_experts_per_tok=2)
    kw.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": 10000.0})
    model = _llama_like(tf.GptOssConfig, tf.GptOssForCausalLM, mlp=mlp, **kw)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_()  # sinks that matter
    return model


def deepseek_v3(heads=4, **kw):
    """MLA with q and kv LoRA latents, one dense block first, 8 routed experts in 4
    groups (2 chosen), one shared expert, a random correction bias."""
    kw.pop("kv", None)  # MLA: the key/value heads are the heads
    kw = {"moe_intermediate_size": 32, **kw}
    kw.update(
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        q_lora_rank=24,
        kv_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=12,
    )
    model = _llama_like(tf.DeepseekV3Config, tf.DeepseekV3ForCausalLM, kv=heads, heads=heads, **kw)
    with torch.no_grad():
        for layer in model.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.normal_(0.0, 0.1)
    return model


def gemma(**kw):
    kw.setdefault("head_dim", 16)  # Gemma's config default is 256
    return _llama_like(tf.GemmaConfig, tf.GemmaForCausalLM, **kw)


def gemma2(**kw):
    kw.setdefault("head_dim", 16)
    kw.setdefault("query_pre_attn_scalar", 16)
    kw.setdefault("sliding_window", 4)  # short, so that the random inputs exercise it
    return _llama_like(tf.Gemma2Config, tf.Gemma2ForCausalLM, **kw)


def olmo2(**kw):
    return _llama_like(tf.Olmo2Config, tf.Olmo2ForCausalLM, **kw)


def gemma3(**kw):
    kw.setdefault("head_dim", 16)  # Gemma3's config default is 256
    kw.setdefault("query_pre_attn_scalar", 16)
    kw.setdefault("sliding_window", 4)  # short, so that the random inputs exercise it
    kw.setdefault("layer_types", _alternate("sliding_attention", "full_attention", kw))
    return _llama_like(tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, **kw)


def _alternate(first: str, second: str, kw: dict) -> list[str]:
    """A per-layer list of two kinds, alternating (the configs' defaults put the second
    kind only every 4th or 6th layer, which two layers never reach)."""
    return [first if i % 2 == 0 else second for i in range(kw.get("layers", 2))]


def phi3(**kw):
    return _llama_like(tf.Phi3Config, tf.Phi3ForCausalLM, **kw)


def smollm3(**kw):
    kw.setdefault("no_rope_layers", [1 - i % 2 for i in range(kw.get("layers", 2))])  # NoPE
    return _llama_like(tf.SmolLM3Config, tf.SmolLM3ForCausalLM, **kw)


def granite(**kw):
    kw = {
        "embedding_multiplier": 12.0,
        "residual_multiplier": 0.22,
        "attention_multiplier": 0.2,
        "logits_scaling": 8.0,
        **kw,
    }
    return _llama_like(tf.GraniteConfig, tf.GraniteForCausalLM, **kw)


def starcoder2(**kw):
    return _llama_like(tf.Starcoder2Config, tf.Starcoder2ForCausalLM, sliding_window=4, **kw)


def gpt_neox(**kw):
    return _standard(tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM, rotary_pct=0.5, **_LM, **kw)


def phi(**kw):
    return _standard(tf.PhiConfig, tf.PhiForCausalLM, qk_layernorm=True, **_LM, **kw)


def opt(**kw):
    return _standard(
        tf.OPTConfig, tf.OPTForCausalLM, mlp_field="ffn_dim", pad_token_id=1, **_LM, **kw
    )


def vit(**kw):
    return _standard(
        tf.ViTConfig, tf.ViTForImageClassification, image_size=16, patch_size=4, num_labels=5, **kw
    )


def roberta_prelayernorm(**kw):
    return _standard(
        tf.RobertaPreLayerNormConfig,
        tf.RobertaPreLayerNormForMaskedLM,
        vocab_size=VOCAB,
        max_position_embeddings=40,
        **kw,
    )


def bert(**kw):
    return _standard(
        tf.BertConfig, tf.BertForMaskedLM, vocab_size=VOCAB, max_position_embeddings=40, **kw
    )


def modernbert(**kw):
    kw.setdefault("layer_types", _alternate("full_attention", "sliding_attention", kw))
    kw.setdefault("local_attention", 4)  # a window of 2 on each side: exercised
    tokens = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    return _standard(
        tf.ModernBertConfig,
        tf.ModernBertForMaskedLM,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        **tokens,
        **kw,
    )


BUILDERS = {
    "gpt2": gpt2,
    "llama": llama,
    "mistral": mistral,
    "qwen2": qwen2,
    "qwen3": qwen3,
    "mixtral": mixtral,
    "qwen2_moe": qwen2_moe,
    "qwen3_moe": qwen3_moe,
    "gpt_oss": gpt_oss,
    "deepseek_v3": deepseek_v3,
    "gpt_neox": gpt_neox,
    "phi": phi,
    "opt": opt,
    "gemma": gemma,
    "gemma2": gemma2,
    "gemma3": gemma3,
    "olmo2": olmo2,
    "phi3": phi3,
    "smollm3": smollm3,
    "granite": granite,
    "starcoder2": starcoder2,
    "vit": vit,
    "roberta-prelayernorm": roberta_prelayernorm,
    "bert": bert,
    "modernbert": modernbert,
}


def build(arch: str, seed: int = 0, dtype=torch.float64, randomize_norms: bool = True, **kw):
    """A random model; norm weights and biases randomised so that errors cannot hide."""
    from lemonkit.module import init_like_from_pretrained

    torch.manual_seed(seed)
    model = init_like_from_pretrained(BUILDERS[arch](**kw).to(dtype).eval())
    if randomize_norms:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name.lower() and p.dim() == 1:
                    p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
                elif name.endswith("bias"):
                    p.copy_(torch.randn_like(p) * 0.1)
    return model


def any_width_is_exact(arch: str) -> bool:
    """False where only multiples of the source width are exact (NOTES.md 6 and 10)."""
    from lemonkit.tables import table_for

    return table_for(build(arch).config.model_type).indivisible_lossy is None


def exact_width(arch: str, indivisible: int = 96, divisible: int = 128) -> int:
    """A target width that is exact for ``arch`` (sources here are 64 wide)."""
    return indivisible if any_width_is_exact(arch) else divisible


def mlp_size(model) -> int:
    """The MLP hidden size of a model, read through its architecture table."""
    from lemonkit.plan.layouts import layout_of
    from lemonkit.tables import table_for

    table = table_for(model.config.model_type)
    return layout_of(table).source(model.config, table).intermediate_size


def resnet(dtype=torch.float64, seed: int = 0, **kw):
    """A random bottleneck ResNet with randomised BatchNorm statistics (eval mode)."""
    from lemonkit.module import init_like_from_pretrained

    torch.manual_seed(seed)
    kw = {"embedding_size": 8, "hidden_sizes": [16, 32], "depths": [2, 2], **kw}
    cfg = tf.ResNetConfig(layer_type="bottleneck", num_labels=5, **kw)
    model = init_like_from_pretrained(tf.ResNetForImageClassification(cfg).to(dtype).eval())
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.3)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
        for name, p in model.named_parameters():
            if "normalization" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return model


def swinv2(dtype=torch.float64, seed: int = 0, randomize_norms: bool = True, **kw):
    """A random Swin-v2 classifier: 16 x 16 patches of 2 pixels, windows of 4 (stage 0 and
    stage 1 both shift their windows), norms randomised. Its sizes are per stage:
    ``embed_dim``, ``num_heads``, ``depths`` (lemonkit grows it through the same names)."""
    from lemonkit.module import init_like_from_pretrained

    torch.manual_seed(seed)
    kw = {"embed_dim": 16, "num_heads": [2, 4], "depths": [2, 2], "mlp_ratio": 2.0, **kw}
    cfg = tf.Swinv2Config(image_size=32, patch_size=2, window_size=4, num_labels=5, **kw)
    model = init_like_from_pretrained(tf.Swinv2ForImageClassification(cfg).to(dtype).eval())
    if randomize_norms:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name and p.dim() == 1:
                    p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
                elif name.endswith("bias"):
                    p.copy_(torch.randn_like(p) * 0.1)
    return model
