"""Dense -> MoE upcycling: every expert a copy of the dense MLP, a random router, the
top-k weights renormalised: exact for any router, alone or with width and depth growth,
in memory and through the CLI with the names the MoE class saves."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

import lemonkit
from lemonkit.cli.main import main
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.testing.zoo import build

PAIRS = [
    ("llama", "mixtral"),
    ("mistral", "mixtral"),
    ("qwen2", "qwen2_moe"),
    ("qwen3", "qwen3_moe"),
]
CLASSES = {"mixtral": "MixtralForCausalLM", "qwen2_moe": "Qwen2MoeForCausalLM"}
CLASSES["qwen3_moe"] = "Qwen3MoeForCausalLM"


@pytest.mark.parametrize(("dense", "to"), PAIRS)
@pytest.mark.parametrize(
    "growth", [{}, dict(hidden_size=96, num_layers=3, intermediate_size=150)], ids=["same", "grown"]
)
def test_upcycled_model_is_the_dense_model(dense, to, growth):
    small = build(dense)
    big, plan = lemonkit.upcycle(
        small, to, num_experts=4, num_experts_per_tok=2, seed=1, return_plan=True, **growth
    )
    assert type(big).__name__ == CLASSES[to]
    assert big.config.num_experts_per_tok == 2
    if growth:
        assert big.config.hidden_size == 96 and big.config.num_hidden_layers == 3
    report = lemonkit.verify(small, big)
    assert report.rel_error_fp64 <= 1e-12, report
    assert report.rel_error_fp32 <= report.tol_fp32, report
    assert plan.to_json()["upcycle"]["class"].endswith(CLASSES[to])


def test_every_expert_copies_the_dense_mlp_and_the_router_is_random():
    small = build("llama")
    a = lemonkit.upcycle(small, "mixtral", num_experts=4, num_experts_per_tok=2, seed=0)
    b = lemonkit.upcycle(small, "mixtral", num_experts=4, num_experts_per_tok=2, seed=1)
    mlp = small.model.layers[0].mlp
    dense = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    experts = a.model.layers[0].mlp.experts
    for e in range(4):
        assert torch.equal(experts.gate_up_proj[e], dense)
        assert torch.equal(experts.down_proj[e], mlp.down_proj.weight)
    router_a, router_b = a.model.layers[0].mlp.gate.weight, b.model.layers[0].mlp.gate.weight
    assert router_a.std() > 0 and not torch.equal(router_a, router_b)
    assert lemonkit.verify(small, b).rel_error_fp64 <= 1e-12  # any router


def test_qwen_renormalises_and_the_shared_expert_starts_at_zero():
    small = build("qwen2")
    big, plan = lemonkit.upcycle(
        small, "qwen2_moe", num_experts=4, num_experts_per_tok=2, return_plan=True
    )
    assert big.config.norm_topk_prob is True and big.config.mlp_only_layers == []
    shared = big.model.layers[0].mlp.shared_expert
    assert torch.equal(shared.down_proj.weight, torch.zeros_like(shared.down_proj.weight))
    assert torch.equal(shared.up_proj.weight, small.model.layers[0].mlp.up_proj.weight)
    assert "norm_topk_prob" in plan.to_json()["upcycle"]["exact_because"]


def test_without_renormalisation_it_would_not_be_exact(monkeypatch):
    """Qwen's default norm_topk_prob=False: the selected probabilities sum to less than 1
    and vary per token, so the copies do not sum to the dense MLP."""
    from dataclasses import replace

    import lemonkit.tables.upcycle as upcycle_tables

    small = build("qwen3")
    rule = upcycle_tables.RULES["qwen3_moe"]
    monkeypatch.setitem(upcycle_tables.RULES, "qwen3_moe", replace(rule, config=()))
    big = lemonkit.upcycle(small, "qwen3_moe", num_experts=4, num_experts_per_tok=2)
    assert big.config.norm_topk_prob is False
    assert lemonkit.verify(small, big).rel_error_fp64 > 1e-2


def test_upcycled_experts_separate_when_trained():
    """Copies see different tokens through the random router, so one step makes them
    differ."""
    from lemonkit.verification.compare import random_inputs

    small = build("llama", randomize_norms=False, dtype=torch.float32)
    big = lemonkit.upcycle(small, "mixtral", num_experts=4, num_experts_per_tok=2).train()
    big.config._experts_implementation = "eager"
    inputs = random_inputs(small.config, 4, 16, seed=0)
    opt = torch.optim.SGD(big.parameters(), lr=1e-1)
    big(**inputs, labels=inputs["input_ids"]).loss.backward()
    opt.step()
    w = big.model.layers[0].mlp.experts.gate_up_proj.detach()
    gaps = [float((w[e] - w[0]).norm() / w[0].norm()) for e in range(1, 4)]
    assert min(gaps) > 1e-6, gaps


def test_upcycle_through_the_cli_writes_what_the_moe_class_saves(tmp_path, capsys):
    src, out = tmp_path / "llama", tmp_path / "moe"
    small = build("llama", dtype=torch.float32)
    small.save_pretrained(src)
    args = ["upcycle", str(src), str(out), "--to", "mixtral", "--num-experts", "8"]
    assert main([*args, "--experts-per-token", "2", "--num-layers", "3"]) == 0
    assert "LlamaForCausalLM -> MixtralForCausalLM" in capsys.readouterr().out
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
    assert "model.layers.2.block_sparse_moe.experts.7.w2.weight" in names
    assert not any(".mlp.gate_proj" in n for n in names)
    big = AutoModelForCausalLM.from_pretrained(out)
    assert type(big).__name__ == "MixtralForCausalLM" and big.config.num_local_experts == 8
    record = json.loads((out / "lemonkit.json").read_text())
    assert record["plan"]["upcycle"]["num_experts"] == 8 and record["verification"]["ok"]
    assert main(["-q", "verify", str(src), str(out)]) == 0
    assert main(["-q", "verify", "--blockwise", str(src), str(out)]) == 0  # each its own table
    prompt = torch.randint(1, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.equal(small.generate(prompt, **kwargs), big.generate(prompt, **kwargs))
    again = tmp_path / "more"  # and the MoE grows its experts like any other
    assert main(["-q", "expand", str(out), str(again), "--num-experts", "16"]) == 0
    assert main(["-q", "verify", str(src), str(again)]) == 0


def test_upcycle_a_headless_model_folder(tmp_path):
    import transformers

    from lemonkit.io.folder import expand_folder
    from lemonkit.plan.upcycle import Upcycle

    src = tmp_path / "src"
    transformers.Qwen3Model(build("qwen3").config).double().save_pretrained(src)
    result = expand_folder(
        src, tmp_path / "out", upcycle=Upcycle("qwen3_moe", 4, 2), hidden_size=96, progress=False
    )
    assert result.report.ok and result.report.rel_error_fp64 <= 1e-12
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["Qwen3MoeModel"]


@pytest.mark.parametrize(
    ("dense", "to", "kwargs", "message"),
    [
        ("gpt2", "mixtral", {}, "mixtral upcycles llama, mistral"),
        ("qwen2", "mixtral", {}, "mixtral upcycles llama, mistral"),
        ("llama", "gpt_oss", {}, "cannot upcycle into 'gpt_oss'"),
        ("llama", "mixtral", dict(num_experts_per_tok=5), "experts per token"),
        ("llama", "mixtral", dict(attention_bias=True), "no biases"),
    ],
)
def test_upcycling_what_cannot_be_exact_is_refused(dense, to, kwargs, message):
    k = kwargs.pop("num_experts_per_tok", 2)
    small = build(dense, **kwargs)
    with pytest.raises(ImpossibleExpansionError, match=message):
        lemonkit.upcycle(small, to, num_experts=4, num_experts_per_tok=k)


def test_cli_upcycle_errors_leave_nothing(tmp_path, capsys):
    src = tmp_path / "qwen2"
    build("qwen2", dtype=torch.float32).save_pretrained(src)
    out = tmp_path / "out"
    args = ["upcycle", str(src), str(out), "--to", "mixtral", "--num-experts", "4"]
    assert main([*args, "--experts-per-token", "2"]) == 2
    assert "mixtral upcycles llama, mistral" in capsys.readouterr().err
    assert (
        main(["upcycle", str(src), str(out), "--to", "qwen2_moe", "--experts-per-token", "2"]) == 2
    )
    assert "--num-experts" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qwen2"]


def test_plan_shows_an_upcycle_before_writing_it(tmp_path, capsys):
    """``lemonkit plan --to`` prints the upcycle and every expert's tensor, writes nothing;
    half the flags is one clear line."""
    src = tmp_path / "llama"
    build("llama", dtype=torch.float32).save_pretrained(src)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["plan", str(src), "--to", "mixtral", "--num-experts", "4"]
    assert main([*args, "--experts-per-token", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("upcycled to ") and "MixtralForCausalLM, 4 experts" in out
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert main(args) == 2
    assert "plan needs --to (the MoE family) and --experts-per-token" in capsys.readouterr().err
