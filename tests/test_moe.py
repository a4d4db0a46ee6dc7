"""Mixtures of experts: more experts (copies of every expert and its router row, experts
per token x m), the experts' own MLP sizes, dense blocks under depth growth, and the
family specifics (Qwen's shared expert, gpt-oss's sinks, DeepSeek's MLA and groups).
The float64 / float32 matrix of every MoE table is in test_lossless.py."""

from dataclasses import replace

import pytest
import torch
from safetensors import safe_open

import lemonkit
from lemonkit.cli.main import main
from lemonkit.errors import CheckpointError, ImpossibleExpansionError
from lemonkit.testing.zoo import build

MOE = ["mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "deepseek_v3"]
COUNT = {"mixtral": "num_local_experts", "qwen2_moe": "num_experts", "qwen3_moe": "num_experts"}
COUNT |= {"gpt_oss": "num_local_experts", "deepseek_v3": "n_routed_experts"}


def _experts(model) -> int:
    return getattr(model.config, COUNT[model.config.model_type])


@pytest.mark.parametrize("arch", MOE)
def test_more_experts_multiply_the_experts_per_token(arch):
    small = build(arch)
    e, k = _experts(small), small.config.num_experts_per_tok
    big, plan = lemonkit.expand(small, num_experts=3 * e, return_plan=True)
    assert _experts(big) == 3 * e and big.config.num_experts_per_tok == 3 * k
    record = plan.to_json()["experts"]
    assert record["experts_per_token"] == [k, 3 * k]
    assert record["compute"] == "expert FLOPs per token x 3"
    if arch == "deepseek_v3":  # the expert groups are copied too
        assert (big.config.n_group, big.config.topk_group) == (12, 6)
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_copies_share_router_rows_and_split_the_down_projection():
    """Softmax router: m copies of an expert get 1/m of its probability each, so their
    down projections sum to m x the source's; gate/up and router rows are copies."""
    small = build("mixtral")
    big = lemonkit.expand(small, num_experts=8)
    s, b = small.state_dict(), big.state_dict()
    layer = "model.layers.0.mlp."
    for name in ("gate.weight", "experts.gate_up_proj"):
        assert torch.equal(b[layer + name][:4], s[layer + name])
        assert torch.equal(b[layer + name][4:], s[layer + name])
    down, src = b[layer + "experts.down_proj"], s[layer + "experts.down_proj"]
    assert not torch.equal(down[:4], down[4:])  # symmetry broken
    torch.testing.assert_close(down[:4] + down[4:], 2 * src, rtol=0, atol=0)


def test_sigmoid_router_without_renormalisation_keeps_each_copys_weight():
    """DeepSeek without norm_topk_prob: a copy keeps its sigmoid score, so the copies'
    down projections sum to the source's (not m x); exact either way."""
    small = build("deepseek_v3", norm_topk_prob=False)
    big = lemonkit.expand(small, num_experts=16)
    name = "model.layers.1.mlp.experts.down_proj"
    down, src = big.state_dict()[name], small.state_dict()[name]
    torch.testing.assert_close(down[:8] + down[8:], src, rtol=0, atol=1e-15)
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_deepseek_expert_groups_must_grow_with_the_experts(monkeypatch):
    """Target expert j copies j mod E, so group c x n_group + g copies group g: exact with
    n_group and topk_group x m, far off without."""
    import lemonkit.tables as registry

    small = build("deepseek_v3")
    exact = lemonkit.verify(small, lemonkit.expand(small, num_experts=16)).rel_error_fp64
    table = registry.table_for("deepseek_v3")
    unscaled = replace(table, experts=replace(table.experts, scaled=()))
    monkeypatch.setattr(
        registry, "TABLES", [unscaled if t is table else t for t in registry.TABLES]
    )
    naive = lemonkit.verify(small, lemonkit.expand(small, num_experts=16)).rel_error_fp64
    assert exact <= 1e-12 and naive > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("m", [2, 3])
def test_expert_copies_are_exact_in_the_storage_dtype(dtype, m):
    """Each copy is stored exactly, and the copies sum to m x the source exactly."""
    small = build("qwen3_moe", dtype=dtype)
    big = lemonkit.expand(small, num_experts=4 * m)
    report = lemonkit.verify(small, big)
    assert report.tol_fp64 == 1e-12 and report.rel_error_fp64 <= 1e-12, report


@pytest.mark.parametrize("optimizer_cls", [torch.optim.SGD, torch.optim.AdamW])
def test_expert_copies_diverge_with_lemon_and_not_with_net2net(optimizer_cls):
    from lemonkit.verification.compare import random_inputs

    small = build("mixtral", randomize_norms=False)
    small.config._experts_implementation = "eager"
    inputs = random_inputs(small.config, 4, 12, seed=0)
    gaps = {}
    for method in ("lemon", "net2net"):
        big = lemonkit.expand(small, num_experts=8, method=method).train()
        opt = optimizer_cls(big.parameters(), lr=1e-2)
        big(**inputs, labels=inputs["input_ids"]).loss.backward()
        opt.step()
        w = big.model.layers[0].mlp.experts.gate_up_proj.detach()
        gaps[method] = float((w[:4] - w[4:]).norm() / w[:4].norm())
    assert gaps["net2net"] < 1e-12, gaps  # equal copies get equal updates
    assert gaps["lemon"] > 1e-6, gaps


def test_keep_top_k_is_refused_then_measured():
    small = build("mixtral")
    with pytest.raises(ImpossibleExpansionError, match="keep_top_k"):
        lemonkit.expand(small, num_experts=8, keep_top_k=True)
    big, plan = lemonkit.expand(
        small, num_experts=8, keep_top_k=True, allow_lossy=True, return_plan=True
    )
    report = lemonkit.verify(small, big)
    assert big.config.num_experts_per_tok == 2 and "keep_top_k" in plan.lossy_reason
    assert not report.ok and 1e-4 < report.rel_error_fp64 < 1.0
    assert plan.to_json()["experts"]["compute"] == "unchanged"


@pytest.mark.parametrize(
    ("arch", "kwargs", "message"),
    [
        ("mixtral", dict(num_experts=6), "not a multiple"),
        ("llama", dict(num_experts=8), "upcycle"),
        ("mixtral", dict(moe_intermediate_size=64), "use intermediate_size"),
        ("qwen3_moe", dict(shared_expert_intermediate_size=64), "no shared_expert"),
        ("deepseek_v3", dict(num_kv_heads=8), "no separate key/value heads"),
        ("deepseek_v3", dict(layer_map=[0, 1, 0, 1]), "first blocks dense"),
    ],
)
def test_impossible_expert_targets_are_refused(arch, kwargs, message):
    with pytest.raises(ImpossibleExpansionError, match=message):
        lemonkit.expand(build(arch), **kwargs)


def test_dense_blocks_follow_their_source_block():
    """Qwen: a dense block's copies are dense (explicit mlp_only_layers); DeepSeek: the
    dense first blocks and their copies stay first."""
    qwen2 = lemonkit.expand(build("qwen2_moe", layers=3), layer_map=[0, 1, 0, 2, 2])
    assert qwen2.config.mlp_only_layers == [0, 2] and qwen2.config.decoder_sparse_step == 1
    qwen3 = lemonkit.expand(build("qwen3_moe", layers=2), num_layers=4)  # layer 0 dense
    assert qwen3.config.mlp_only_layers == [0, 1]
    deepseek = lemonkit.expand(build("deepseek_v3", layers=3), num_layers=6)
    assert deepseek.config.first_k_dense_replace == 2
    types = [type(layer.mlp).__name__ for layer in deepseek.model.layers]
    assert types == ["DeepseekV3MLP"] * 2 + ["DeepseekV3MoE"] * 4


def test_qwen2_moe_grows_its_shared_expert_and_keeps_its_gate():
    small = build("qwen2_moe")
    big = lemonkit.expand(small, hidden_size=96, shared_expert_intermediate_size=120)
    mlp = big.model.layers[1].mlp
    assert mlp.shared_expert.up_proj.weight.shape == (120, 96)
    assert mlp.shared_expert_gate.weight.shape == (1, 96)
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_gpt_oss_sinks_follow_their_heads():
    small = build("gpt_oss")
    big = lemonkit.expand(small, hidden_size=128, num_heads=8, num_kv_heads=4)
    sinks = big.model.layers[0].self_attn.sinks
    source = small.model.layers[0].self_attn.sinks
    assert torch.equal(sinks[:4], source) and torch.equal(sinks[4:], source)
    assert big.config.layer_types == small.config.layer_types


def test_deepseek_keeps_its_latents_and_grows_heads_on_their_own():
    small = build("deepseek_v3")
    big = lemonkit.expand(small, hidden_size=96, num_heads=8)
    attn = big.model.layers[0].self_attn
    assert attn.q_a_proj.weight.shape == (24, 96)  # q_lora_rank kept
    assert attn.kv_a_proj_with_mqa.weight.shape == (16 + 8, 96)  # kv latent + rope kept
    assert attn.kv_b_proj.weight.shape == (8 * (8 + 12), 16)  # heads x (nope + v)
    assert big.config.num_key_value_heads == 8
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


@pytest.mark.parametrize("arch", ["qwen2_moe", "gpt_oss"])
def test_more_experts_through_the_cli_with_the_saved_names(arch, tmp_path):
    """qwen2_moe saves one tensor per expert, gpt-oss stacked ones: both are read and
    written as the class saves them, and from_pretrained loads the result."""
    from transformers import AutoModelForCausalLM

    src, out = tmp_path / "src", tmp_path / "out"
    small = build(arch, dtype=torch.float32)
    small.save_pretrained(src)
    args = ["-q", "expand", str(src), str(out), "--num-experts", "8", "--hidden-size", "96"]
    if arch == "qwen2_moe":
        args += ["--moe-intermediate-size", "64"]
    assert main(args) == 0
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
        if arch == "qwen2_moe":  # expert 4 copies expert 0: its down projection differs
            down = "model.layers.1.mlp.experts.{}.down_proj.weight"
            assert not torch.equal(f.get_tensor(down.format(0)), f.get_tensor(down.format(4)))
    if arch == "qwen2_moe":
        assert "model.layers.1.mlp.experts.7.down_proj.weight" in names
    else:
        assert "model.layers.1.mlp.experts.gate_up_proj" in names
    big = AutoModelForCausalLM.from_pretrained(out)
    assert type(big) is type(small) and _experts(big) == 8
    if arch == "qwen2_moe":
        assert big.config.moe_intermediate_size == 64 and big.config.intermediate_size == 96
    assert main(["-q", "verify", str(src), str(out)]) == 0


def test_a_checkpoint_missing_an_expert_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    src = tmp_path / "src"
    build("mixtral", dtype=torch.float32).save_pretrained(src)
    tensors = load_file(src / "model.safetensors")
    tensors = {k: v for k, v in tensors.items() if ".experts.3." not in k or "layers.1" not in k}
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    from lemonkit.io.folder import plan_folder

    with pytest.raises(CheckpointError, match="4 experts"):
        plan_folder(src, hidden_size=96)


def test_routers_are_compared_without_their_float32_upcast(monkeypatch):
    """The routers' softmax (Mixtral, Qwen) and logits (DeepSeek) run in float32 in the
    stock code; the float64 check removes that, as for RMSNorm (NOTES.md 12)."""
    import lemonkit.verification.compare as compare

    small = build("deepseek_v3")
    big = lemonkit.expand(small, hidden_size=96, num_experts=16)
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12
    monkeypatch.setattr(compare, "_kept_float64", lambda forward: forward)
    assert lemonkit.verify(small, big).rel_error_fp64 > 1e-10


def test_plan_text_names_expert_copies(tmp_path, capsys):
    src = tmp_path / "src"
    build("qwen3_moe", dtype=torch.float32).save_pretrained(src)
    assert main(["plan", str(src), "--num-experts", "8"]) == 0
    text = capsys.readouterr().out
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in text
    assert "copy 2 of 2 of its expert" in text
