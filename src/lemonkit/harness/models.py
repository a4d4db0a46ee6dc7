"""A model spec (a small dict from an experiment config) -> a ``transformers`` model.

The experiment models are the stock ``transformers`` classes, built from configs on the
spot (nothing downloaded); dropout is off so that the runs compare optimisation only.

Example:
    >>> spec = {"arch": "llama", "hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2,
    ...         "intermediate": 64}
    >>> m = build_model(spec, task="causal_lm", seq_len=16)
    >>> type(m).__name__, m.config.num_key_value_heads
    ('LlamaForCausalLM', 2)
"""

from __future__ import annotations

import torch
import transformers as tf

from lemonkit.harness.data import TEXT_VOCAB

ARCHS = ("llama", "gpt2", "vit", "bert")
TASKS = {"llama": "causal_lm", "gpt2": "causal_lm", "vit": "image", "bert": "mlm"}


def _config(spec: dict, seq_len: int) -> tf.PretrainedConfig:
    d, n, h = spec["hidden"], spec["layers"], spec["heads"]
    ffn = spec.get("intermediate", 4 * d)
    arch = spec["arch"]
    vocab = spec.get("vocab", TEXT_VOCAB)  # a subword vocabulary's size (``tokenize``); bytes
    if arch == "llama":
        return tf.LlamaConfig(
            vocab_size=vocab,
            hidden_size=d,
            num_hidden_layers=n,
            num_attention_heads=h,
            num_key_value_heads=spec.get("kv_heads", h),
            intermediate_size=ffn,
            max_position_embeddings=seq_len,
            tie_word_embeddings=False,
        )
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab,
            n_embd=d,
            n_layer=n,
            n_head=h,
            n_inner=ffn,
            n_positions=seq_len,
            # "gelu_pytorch_tanh": the same tanh approximation in one kernel (a preset's
            # choice, so part of its runs' cache key); GPT-2's default composes six
            activation_function=spec.get("activation", "gelu_new"),
            bos_token_id=0,
            eos_token_id=0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    if arch == "vit":
        return tf.ViTConfig(
            hidden_size=d,
            num_hidden_layers=n,
            num_attention_heads=h,
            intermediate_size=ffn,
            image_size=spec.get("image_size", 28),  # other images: ``ImageData.geometry``
            patch_size=spec.get("patch", 4),
            num_channels=spec.get("channels", 1),
            num_labels=spec.get("labels", 10),
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    if arch == "bert":
        return tf.RobertaPreLayerNormConfig(
            vocab_size=vocab,
            hidden_size=d,
            num_hidden_layers=n,
            num_attention_heads=h,
            # pad id 1: byte 1 never occurs in the text; positions start after it
            intermediate_size=ffn,
            max_position_embeddings=seq_len + 2,
            pad_token_id=1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            type_vocab_size=1,
        )
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def model_class(arch: str) -> type:
    return {
        "llama": tf.LlamaForCausalLM,
        "gpt2": tf.GPT2LMHeadModel,
        "vit": tf.ViTForImageClassification,
        "bert": tf.RobertaPreLayerNormForMaskedLM,
    }[arch]


def build_model(spec: dict, task: str, seq_len: int, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model (``transformers``' own init, seeded)."""
    if TASKS[spec["arch"]] != task:
        raise ValueError(f"arch {spec['arch']!r} does not do task {task!r}")
    torch.manual_seed(seed)
    config = _config(spec, seq_len)
    config._attn_implementation = "sdpa"
    return model_class(spec["arch"])(config)


def expand_kwargs(spec: dict) -> dict:
    """The target sizes of ``lemonkit.expand`` for a large-model spec."""
    out = {
        "hidden_size": spec["hidden"],
        "num_layers": spec["layers"],
        "num_heads": spec["heads"],
        "intermediate_size": spec.get("intermediate", 4 * spec["hidden"]),
    }
    if spec["arch"] == "llama":
        out["num_kv_heads"] = spec.get("kv_heads", spec["heads"])
    return out


# parameter names of input embeddings and positions (no FLOPs per token)
EMBEDDING_NAMES = (
    "embed_tokens",
    "wte",
    "wpe",
    "word_embeddings",
    "position_embeddings",
    "token_type_embeddings",
)


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters that cost FLOPs per token (input embeddings and positions excluded)."""
    return sum(
        p.numel() for n, p in model.named_parameters() if not any(s in n for s in EMBEDDING_NAMES)
    )


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters multiplied per token: the non-embedding ones, plus the output head when
    it is tied to the input embedding (``named_parameters`` lists a tied weight once)."""
    n = non_embedding_params(model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if head is not None and embed is not None and head.weight is embed.weight:
        n += head.weight.numel()
    return n


def head_params(model: torch.nn.Module) -> int:
    """Parameters of a masked LM's output head (``lm_head``: its dense layer and the
    decoder, tied or not) multiplied per predicted position; 0 for other models."""
    head = getattr(model, "lm_head", None)
    if head is None or not isinstance(model, tf.RobertaPreLayerNormForMaskedLM):
        return 0
    params = head.named_parameters(remove_duplicate=False)
    return sum(p.numel() for _, p in params if p.dim() >= 2)


def train_flops_per_step(
    model: torch.nn.Module, tokens: int, seq_len: int, head_share: float = 1.0
) -> float:
    """Forward + backward FLOPs of one step: 6 N per token (N: ``matmul_params``) plus
    attention scores, 12 L T d per token (Kaplan et al. 2020 / Chinchilla accounting).
    ``head_share``: the share of positions a masked LM's head sees (``loop.LabelledHead``).

    Example (a masked LM's head on 15% of the positions costs 15% of its FLOPs):
        >>> bert = build_model({"arch": "bert", "hidden": 16, "layers": 1, "heads": 2,
        ...                     "vocab": 512}, task="mlm", seq_len=8)
        >>> full, masked = (train_flops_per_step(bert, 64, 8, s) for s in (1.0, 0.15))
        >>> round((full - masked) / (6 * 64 * 0.85)) == head_params(bert)
        True
    """
    c = model.config
    layers, width = c.num_hidden_layers, c.hidden_size
    per_token = matmul_params(model) - (1.0 - head_share) * head_params(model)
    return 6.0 * per_token * tokens + 12.0 * layers * seq_len * width * tokens


def forward_flops_per_step(
    model: torch.nn.Module, tokens: int, seq_len: int, head_share: float = 1.0
) -> float:
    """Forward only (a KI teacher): a third of ``train_flops_per_step``."""
    return train_flops_per_step(model, tokens, seq_len, head_share) / 3.0
