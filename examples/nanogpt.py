"""Your own PyTorch model with lemonkit: a nanoGPT-style GPT, declared with a table.

The model is plain PyTorch (not a transformers class). Declaring it takes one table that
says, for every parameter, which *space* each axis lives in (the same format as the
built-in architectures), plus the config field names. Then ``lemonkit.expand``,
``lemonkit.verify`` and the CLI (``lemonkit --plugin examples/nanogpt.py expand ...``)
work on it as on any built-in model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig

import lemonkit
from lemonkit import (
    HEADS,
    HIDDEN,
    KV_HEADS,
    MLP,
    ArchTable,
    ConfigFields,
    In,
    Out,
    Tensor,
    layer_norm,
    linear,
)


class NanoGPTConfig(PretrainedConfig):
    """Sizes of the model; a PretrainedConfig only for its JSON (de)serialisation."""

    model_type = "nanogpt"

    def __init__(
        self,
        vocab_size=97,
        n_embd=64,
        n_head=4,
        n_layer=2,
        n_inner=None,
        max_position_embeddings=64,
        layer_norm_eps=1e-5,
        tie_word_embeddings=True,
        **kwargs,
    ):
        self.vocab_size, self.n_embd, self.n_head, self.n_layer = (
            vocab_size,
            n_embd,
            n_head,
            n_layer,
        )
        self.n_inner = n_inner  # None: 4 x n_embd
        self.max_position_embeddings = max_position_embeddings
        self.layer_norm_eps = layer_norm_eps
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


class Attention(nn.Module):
    def __init__(self, c: NanoGPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)  # [q; k; v] rows
        self.proj = nn.Linear(c.n_embd, c.n_embd)

    def forward(self, x):  # x: [B, T, D]
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d]
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class MLP_(nn.Module):
    def __init__(self, c: NanoGPTConfig):
        super().__init__()
        inner = c.n_inner or 4 * c.n_embd
        self.fc, self.proj = nn.Linear(c.n_embd, inner), nn.Linear(inner, c.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, c: NanoGPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps)
        self.attn = Attention(c)
        self.ln2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps)
        self.mlp = MLP_(c)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class NanoGPT(nn.Module):
    def __init__(self, config: NanoGPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.wte.weight

    def forward(self, input_ids):  # [B, T] -> logits [B, T, vocab]
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# The declaration: which space every axis of every parameter lives in.
NANOGPT = lemonkit.register(
    ArchTable(
        model_types=("nanogpt",),
        classes=("NanoGPT",),
        model_class=NanoGPT,
        config_class=NanoGPTConfig,
        config=ConfigFields(
            hidden="n_embd",
            layers="n_layer",
            heads="n_head",
            mlp="n_inner",
            norm_eps=("layer_norm_eps",),
            mlp_default_mult=4,
        ),
        norm="layernorm",  # Pre-LN with LayerNorm: an average-filled stream
        task="causal_lm",
        tie_embeddings=("lm_head.weight", "wte.weight"),
        vocab=("wte.weight", "lm_head.weight"),
        tensors=(
            Tensor("wte.weight", (None, Out(HIDDEN))),  # [vocab, D]: writes the stream
            Tensor("wpe.weight", (None, Out(HIDDEN))),  # [positions, D]
            *layer_norm("h.{i}.ln1"),
            *linear("h.{i}.attn.qkv", (HEADS, KV_HEADS, KV_HEADS), HIDDEN),  # fused [q; k; v]
            *linear("h.{i}.attn.proj", HIDDEN, HEADS, branch_out=True),  # zero in new blocks
            *layer_norm("h.{i}.ln2"),
            *linear("h.{i}.mlp.fc", MLP, HIDDEN),
            *linear("h.{i}.mlp.proj", HIDDEN, MLP, branch_out=True),
            *layer_norm("ln_f", tied_head_norm=True),  # feeds the tied head: scaled 1/k
            Tensor("lm_head.weight", (None, In(HIDDEN)), optional=True),  # [vocab, D]
        ),
    )
)
