"""The expanded model is a plain transformers model: save -> from_pretrained -> same
outputs, and greedy generation gives the same tokens."""

import pytest
import torch

import lemonkit
from lemonkit.testing.zoo import BUILDERS, build, exact_width

CAUSAL = [
    "gpt2",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "gpt_oss",
    "deepseek_v3",
    "gpt_neox",
    "phi",
    "opt",
    "gemma",
    "gemma2",
    "olmo2",
    "gemma3",
    "phi3",
    "smollm3",
    "granite",
    "starcoder2",
]


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_save_and_from_pretrained_keep_outputs(arch, tmp_path):
    small = build(arch, dtype=torch.float32)
    width = exact_width(arch)
    big = lemonkit.expand(small, hidden_size=width, num_layers=3)
    big.save_pretrained(tmp_path)
    reloaded = type(big).from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(small)
    assert lemonkit.verify(small, reloaded).ok


@pytest.mark.parametrize("arch", CAUSAL)
def test_greedy_generation_is_identical(arch):
    small = build(arch, dtype=torch.float64)
    small.config._experts_implementation = "eager"  # MoE grouped-mm kernels refuse float64
    big = lemonkit.expand(small, hidden_size=96, num_layers=3, intermediate_size=400)
    prompt = torch.randint(1, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        a = small.generate(prompt, **kwargs)
        b = big.generate(prompt, **kwargs)
    assert torch.equal(a, b)
