"""Lossless, measured: every architecture x every kind of expansion (float64 and float32).

float64: rel error <= 1e-12 with transformers' float32 upcasts removed (NOTES.md 12).
float32: rel error <= max(1e-5, 5 x the source's own float32 error) (NOTES.md 9).
"""

import pytest
import torch

import lemonkit
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.testing.zoo import BUILDERS, any_width_is_exact, build, exact_width, mlp_size

# separate KV heads (GQA) and a head_dim of their own: the head-growth cases apply
LLAMA_FAMILY = ["llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3", "smollm3", "granite"]
LLAMA_FAMILY += ["starcoder2"]
MOE = ["mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "deepseek_v3"]


def _cases(arch: str) -> dict[str, dict]:
    src_mlp = mlp_size(build(arch))
    exact_any_width = any_width_is_exact(arch)
    cases = {
        "divisible": dict(hidden_size=128),
        "indivisible": dict(hidden_size=96),
        "ratio_above_2": dict(hidden_size=160 if exact_any_width else 192),
        "ffn_only": dict(intermediate_size=int(src_mlp * 1.7)),
        "depth_only": dict(num_layers=5),
        "layer_map": dict(layer_map=[0, 1, 0, 1]),
        "everything": dict(
            hidden_size=96 if exact_any_width else 128,
            num_layers=3,
            intermediate_size=int(src_mlp * 1.5),
        ),
    }
    if not exact_any_width:
        del cases["indivisible"]
    if arch == "olmo2":  # dead-head maps: the group size must be kept
        cases["heads_and_kv"] = dict(hidden_size=128, num_heads=8, num_kv_heads=4)
    if arch in MOE:
        cases.update(_moe_cases(arch))
    if arch in LLAMA_FAMILY:
        cases["heads_and_kv"] = dict(hidden_size=128, num_heads=8, num_kv_heads=4)
        cases["gqa_regroup"] = dict(hidden_size=96, num_heads=6, num_kv_heads=2)
        cases["kv_heads_only"] = dict(num_kv_heads=4)
        cases["heads_without_width"] = dict(num_heads=8, num_kv_heads=2)
    return cases


def _moe_cases(arch: str) -> dict[str, dict]:
    """More experts (x2, x3), the experts' own MLP size, heads, and all of it at once."""
    from lemonkit.plan.experts import expert_source
    from lemonkit.tables import table_for

    small = build(arch)
    src = expert_source(small.config, table_for(small.config.model_type))
    experts = src["num_experts"]
    cases = {
        "more_experts": dict(num_experts=2 * experts),
        "experts_x3_and_width": dict(num_experts=3 * experts, hidden_size=96),
        "heads_and_kv": dict(hidden_size=128, num_heads=8, num_kv_heads=4),
    }
    if arch == "deepseek_v3":  # MLA: heads grow on their own, KV heads are the heads
        cases["heads_and_kv"] = dict(hidden_size=96, num_heads=8)
        cases["layer_map"] = dict(layer_map=[0, 0, 1, 1, 1])  # dense blocks must come first
    if src["moe_intermediate_size"]:
        cases["expert_mlp_only"] = dict(
            moe_intermediate_size=int(src["moe_intermediate_size"] * 1.7)
        )
    if src["shared_expert_intermediate_size"]:
        cases["shared_expert_only"] = dict(shared_expert_intermediate_size=100)
    moe_mlp = src["moe_intermediate_size"] and dict(moe_intermediate_size=70)
    cases["everything_moe"] = dict(
        hidden_size=96, num_layers=3, num_experts=2 * experts, **(moe_mlp or {})
    )
    return cases


MATRIX = [(arch, name) for arch in BUILDERS for name in _cases(arch)]


@pytest.mark.parametrize(("arch", "case"), MATRIX, ids=[f"{a}-{c}" for a, c in MATRIX])
def test_lossless_float64_and_float32(arch, case):
    small = build(arch, dtype=torch.float64)
    extra = {"head_dim": 16} if case == "heads_without_width" else {}
    if extra:
        small = build(arch, dtype=torch.float64, **extra)
    big = lemonkit.expand(small, seed=1, **_cases(arch)[case])
    report = lemonkit.verify(small, big)
    assert report.rel_error_fp64 <= 1e-12, report
    assert report.rel_error_fp32 <= report.tol_fp32, report
    assert report.ok


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_float32_model_expands_within_float32_tolerance(arch):
    small = build(arch, dtype=torch.float32)
    big = lemonkit.expand(small, **_cases(arch)["everything"])
    assert next(big.parameters()).dtype == torch.float32
    report = lemonkit.verify(small, big)
    assert report.rel_error_fp32 <= max(1e-5, 5 * report.source_fp32_error), report
    assert report.ok, report


def test_mqa_source_stays_lossless():
    small = build("llama", kv=1)
    big = lemonkit.expand(small, hidden_size=96, num_layers=3)
    assert big.config.num_key_value_heads == 1
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_untied_and_tied_heads():
    for tie in (True, False):
        small = build("llama", tie_word_embeddings=tie)
        big = lemonkit.expand(small, hidden_size=96)
        assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12
        if tie:
            assert big.lm_head.weight.data_ptr() == big.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("arch,dtype", [("gpt2", None), ("llama", torch.bfloat16)])
def test_source_is_not_modified(arch, dtype):
    """Also where a new block's untying noise is added in place (bfloat16 llama: its
    tensors are grown in the output dtype, then noised in place when fresh)."""
    small = build(arch) if dtype is None else build(arch, dtype=dtype)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    big = lemonkit.expand(small, hidden_size=96, num_layers=4)
    for k, v in small.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert small.config.hidden_size == 64 and big.config.hidden_size == 96


def test_roberta_prelayernorm_indivisible_is_refused_then_measured():
    small = build("roberta-prelayernorm")
    with pytest.raises(ImpossibleExpansionError, match="NOTES.md section 10"):
        lemonkit.expand(small, hidden_size=96)
    big, plan = lemonkit.expand(small, hidden_size=96, allow_lossy=True, return_plan=True)
    report = lemonkit.verify(small, big)
    assert plan.lossy_reason
    assert not report.ok
    assert 1e-6 < report.rel_error_fp64 < 0.5  # an approximation, not garbage


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(hidden_size=32), "smaller"),
        (dict(hidden_size=72), "not a multiple of head_dim"),
        (dict(hidden_size=96, num_heads=8), "head_dim"),
        (dict(num_layers=1), "smaller"),
        (dict(method="bogus"), "method"),
    ],
)
def test_impossible_targets_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ImpossibleExpansionError, match=message):
        lemonkit.expand(build("gpt2"), **kwargs)


def test_paper_printed_eta_without_square_root_is_lossy(monkeypatch):
    """NOTES.md 1: the paper's eta = k*Ds/Dt (no root) fails at 64 -> 96; sqrt is exact."""
    from lemonkit.plan.spaces import SpaceMap

    small = build("gpt2")
    exact = lemonkit.verify(small, lemonkit.expand(small, hidden_size=96))
    monkeypatch.setattr(SpaceMap, "eta", property(lambda m: m.copies * m.src_units / m.tgt_units))
    paper = lemonkit.verify(small, lemonkit.expand(small, hidden_size=96))
    assert exact.rel_error_fp64 <= 1e-12
    assert paper.rel_error_fp64 > 1e-2


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(
    "kwargs", [dict(hidden_size=128), dict(intermediate_size=400), dict(num_layers=3)]
)
def test_bfloat16_divisible_ffn_and_depth_are_exact(arch, kwargs):
    """Splits are rounded onto the bf16 grid so that the copies sum exactly in bf16."""
    small = build(arch, dtype=torch.bfloat16)
    big = lemonkit.expand(small, **kwargs)
    assert next(big.parameters()).dtype == torch.bfloat16
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


def test_bfloat16_indivisible_error_is_one_rounding_of_the_norm_scale():
    """eta = sqrt(2/3) is irrational: gamma * eta is rounded once to bf16 (~2^-9)."""
    small = build("llama", dtype=torch.bfloat16)
    report = lemonkit.verify(small, lemonkit.expand(small, hidden_size=96))
    assert 1e-5 < report.rel_error_fp64 < 1e-2


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_tiny_chunks_stay_lossless(arch, monkeypatch):
    """Big tensors are expanded in row chunks; force many chunks and many boundaries."""
    import lemonkit.engine.tensor

    monkeypatch.setattr(lemonkit.engine.tensor, "CHUNK_ELEMENTS", 50)
    small = build(arch)
    width = exact_width(arch)
    big = lemonkit.expand(small, hidden_size=width, num_layers=3)
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12


BASE_MODELS = {
    "gpt2": "GPT2Model",
    "llama": "LlamaModel",
    "mistral": "MistralModel",
    "qwen2": "Qwen2Model",
    "qwen3": "Qwen3Model",
    "mixtral": "MixtralModel",
    "qwen2_moe": "Qwen2MoeModel",
    "qwen3_moe": "Qwen3MoeModel",
    "gpt_oss": "GptOssModel",
    "deepseek_v3": "DeepseekV3Model",
    "gpt_neox": "GPTNeoXModel",
    "phi": "PhiModel",
    "opt": "OPTModel",
    "gemma": "GemmaModel",
    "gemma2": "Gemma2Model",
    "olmo2": "Olmo2Model",
    "gemma3": "Gemma3TextModel",
    "phi3": "Phi3Model",
    "smollm3": "SmolLM3Model",
    "granite": "GraniteModel",
    "starcoder2": "Starcoder2Model",
    "vit": "ViTModel",
    "roberta-prelayernorm": "RobertaPreLayerNormModel",
    "bert": "BertModel",
    "modernbert": "ModernBertModel",
}


@pytest.mark.parametrize("arch", list(BASE_MODELS))
def test_headless_base_models(arch, tmp_path):
    """*Model classes (no head, no prefix): last hidden state's source channels match."""
    import transformers

    from lemonkit.io.folder import expand_folder
    from lemonkit.verification.folders import verify_folders

    torch.manual_seed(0)
    cls = getattr(transformers, BASE_MODELS[arch])
    small = cls(build(arch).config).to(torch.float64).eval()
    big = lemonkit.expand(small, hidden_size=128, num_layers=3)
    assert type(big) is cls
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12
    small.save_pretrained(tmp_path / "src")  # and from a folder, detected by its names
    expand_folder(tmp_path / "src", tmp_path / "out", hidden_size=128, progress=False)
    assert verify_folders(tmp_path / "src", tmp_path / "out").rel_error_fp64 <= 1e-12


def test_qwen3_shared_eps_is_exact_after_reload(tmp_path):
    """Qwen3's rms_norm_eps also serves the per-head q/k norms: instead of eta^2 * eps the
    stream is scaled by 1/eta, so a saved and reloaded indivisible expansion is exact."""
    small = build("qwen3")
    big, plan = lemonkit.expand(small, hidden_size=96, return_plan=True)
    assert plan.target_config.rms_norm_eps == small.config.rms_norm_eps
    big.save_pretrained(tmp_path)
    reloaded = type(big).from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert lemonkit.verify(small, reloaded).rel_error_fp64 <= 1e-12


def test_opt_with_embedding_projections_and_fixed_eps(tmp_path):
    """word_embed_proj_dim != hidden: embeddings and the tied head stay 32 wide, the
    projections grow; eps is fixed in the library, so the stream is scaled by 1/eta."""
    small = build("opt", word_embed_proj_dim=32)
    big = lemonkit.expand(small, hidden_size=96, num_layers=3)
    assert big.model.decoder.embed_tokens.weight.shape == (97, 32)
    assert big.model.decoder.project_in.weight.shape == (96, 32)
    big.save_pretrained(tmp_path)
    reloaded = type(big).from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert lemonkit.verify(small, reloaded).rel_error_fp64 <= 1e-12


def test_post_ln_opt_is_refused():
    with pytest.raises(ImpossibleExpansionError, match="post-LN OPT"):
        lemonkit.expand(build("opt", do_layer_norm_before=False), hidden_size=128)


def test_olmo2_all_head_norms_need_dead_heads(monkeypatch):
    """NOTES.md 13: q/k norms over all heads break under uneven head copies (64 -> 96);
    whole copies plus dead heads are exact, and a regrouping is refused."""
    from dataclasses import replace

    import lemonkit.tables as registry

    small = build("olmo2")
    exact = lemonkit.verify(small, lemonkit.expand(small, hidden_size=96)).rel_error_fp64
    with pytest.raises(ImpossibleExpansionError, match="query heads per KV head"):
        lemonkit.expand(small, hidden_size=96, num_heads=6, num_kv_heads=2)
    olmo2 = registry.table_for("olmo2")
    tables = [replace(t, dead_heads=False) if t is olmo2 else t for t in registry.TABLES]
    monkeypatch.setattr(registry, "TABLES", tables)
    naive = lemonkit.verify(small, lemonkit.expand(small, hidden_size=96)).rel_error_fp64
    assert exact <= 1e-12
    assert naive > 1e-3


def test_verification_checks_every_copy_of_a_headless_output():
    """A headless output is the grown stream: a wrong second copy must be caught."""
    import transformers

    torch.manual_seed(0)
    small = transformers.LlamaModel(build("llama").config).double().eval()
    big = lemonkit.expand(small, hidden_size=128)
    assert lemonkit.verify(small, big).ok
    with torch.no_grad():
        big.norm.weight[64:] = 0
    assert not lemonkit.verify(small, big).ok


def test_bfloat16_divisible_expansions_are_held_to_float64_exactness():
    """No irrational factor at a multiple of the width: 1e-12 even for bf16 weights, so
    a 2% error in one copy of a norm is caught (a flat bf16 epsilon would let it pass)."""
    small = build("llama", dtype=torch.bfloat16)
    big = lemonkit.expand(small, hidden_size=128)
    report = lemonkit.verify(small, big)
    assert report.ok and report.tol_fp64 == 1e-12
    with torch.no_grad():
        big.model.layers[0].input_layernorm.weight[64:] *= 1.02
    assert not lemonkit.verify(small, big).ok


def test_explicit_head_dim_keeps_heads_when_width_is_not_a_multiple():
    """Qwen3 with head_dim 32 independent of the width: 64 -> 100 keeps 4 heads."""
    small = build("qwen3", head_dim=32)
    big = lemonkit.expand(small, hidden_size=100)
    assert big.config.num_attention_heads == small.config.num_attention_heads
    assert lemonkit.verify(small, big).rel_error_fp64 <= 1e-12
