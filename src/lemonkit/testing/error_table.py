"""The measured error table: every architecture x every kind of expansion.

Run ``python -m lemonkit.testing.error_table`` (or ``make demo``) to reproduce the README table.

Example:
    >>> rows = measure(["gpt2"], ["depth 2->5"])
    >>> rows[0]["fp64"] == 0.0
    True
"""

from __future__ import annotations

import torch

import lemonkit
from lemonkit.errors import ImpossibleExpansionError
from lemonkit.testing.zoo import BUILDERS, build, mlp_size

# source: hidden 64, 4 heads (2 KV heads for the LLaMA family), 2 layers
KINDS: dict[str, dict] = {
    "64->128": dict(hidden_size=128),
    "64->96": dict(hidden_size=96),
    "64->160": dict(hidden_size=160),
    "heads 4->8, KV 2->4": dict(hidden_size=128, num_heads=8, num_kv_heads=4),
    "FFN x1.7": dict(mlp_factor=1.7),
    "depth 2->5": dict(num_layers=5),
    "64->96, 2->3 layers, FFN x1.5": dict(hidden_size=96, num_layers=3, mlp_factor=1.5),
}


def _targets(model, kind: dict) -> dict:
    kind = dict(kind)
    factor = kind.pop("mlp_factor", None)
    if factor:
        kind["intermediate_size"] = int(mlp_size(model) * factor)
    if (
        "num_kv_heads" in kind
        and lemonkit.table_for(model.config.model_type).config.kv_heads is None
    ):
        kind.pop("num_kv_heads")
    return kind


def measure(archs: list[str] | None = None, kinds: list[str] | None = None) -> list[dict]:
    """One row per (architecture, kind): float64 and float32 relative errors."""
    rows = []
    for arch in archs or list(BUILDERS):
        for name in kinds or list(KINDS):
            small = build(arch, dtype=torch.float64)
            targets = _targets(small, KINDS[name])
            row = {"arch": arch, "kind": name, "lossy": False}
            try:
                big = lemonkit.expand(small, **targets)
            except ImpossibleExpansionError:
                big = lemonkit.expand(small, allow_lossy=True, **targets)
                row["lossy"] = True
            report = lemonkit.verify(small, big)
            row.update(fp64=report.rel_error_fp64, fp32=report.rel_error_fp32, ok=report.ok)
            rows.append(row)
    return rows


def to_markdown(rows: list[dict]) -> str:
    """One row per architecture, one column per kind: "float64 / float32" errors."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    cell = {(r["arch"], r["kind"]): r for r in rows}
    lines = ["| model type | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for arch in archs:
        cells = []
        for kind in kinds:
            r = cell[(arch, kind)]
            text = f"{r['fp64']:.0e} / {r['fp32']:.0e}"
            cells.append(f"refused (lossy: {text})" if r["lossy"] else text)
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ResNet grows per stage; its source: stem 8, widths [16, 32], depths [2, 2]
RESNET_KINDS: dict[str, dict] = {
    "widths x2": dict(hidden_sizes=[32, 64]),
    "widths x1.5, stem x1.5": dict(hidden_sizes=[24, 48], embedding_size=12),
    "widths 16->24, 32->56": dict(hidden_sizes=[24, 56]),
    "depths 2->3, 2->5": dict(depths=[3, 5]),
    "everything": dict(hidden_sizes=[24, 56], depths=[4, 3], embedding_size=16),
}


# Swin-v2 grows per stage too; its source: embed_dim 16 (stages 16, 32), heads [2, 4],
# depths [2, 2], mlp_ratio 2
SWINV2_KINDS: dict[str, dict] = {
    "embed_dim x2": dict(embed_dim=32),
    "embed_dim x3": dict(embed_dim=48),
    "embed_dim 16->24": dict(embed_dim=24),
    "depths 2->3, 2->5": dict(depths=[3, 5]),
    "mlp_ratio 2->3.5": dict(mlp_ratio=3.5),
    "everything": dict(embed_dim=32, depths=[4, 3], mlp_ratio=3.0),
}


def measure_staged(arch: str, kinds: dict[str, dict]) -> str:
    """The row of a family whose sizes are per stage (``resnet``, ``swinv2``)."""
    from lemonkit.testing import zoo

    cells = []
    for kwargs in kinds.values():
        small = getattr(zoo, arch)()
        try:
            cell = "{:.0e} / {:.0e}"
            big = lemonkit.expand(small, **kwargs)
        except ImpossibleExpansionError:
            cell = "refused (lossy: {:.0e} / {:.0e})"
            big = lemonkit.expand(small, allow_lossy=True, **kwargs)
        report = lemonkit.verify(small, big)
        cells.append(cell.format(report.rel_error_fp64, report.rel_error_fp32))
    header = "| model type | " + " | ".join(kinds) + " |"
    row = f"| {arch} | " + " | ".join(cells) + " |"
    return "\n".join([header, "|---|" + "---|" * len(kinds), row])


def measure_resnet() -> str:
    """The ResNet row of the error table (its sizes are per stage)."""
    return measure_staged("resnet", RESNET_KINDS)


def staged_markdown() -> str:
    """The rows of the families that grow per stage: ResNet, then Swin-v2."""
    return measure_resnet() + "\n\n" + measure_staged("swinv2", SWINV2_KINDS)


# mixtures of experts (sources: 4 experts, 2 per token; DeepSeek 8 in 4 groups)
MOE_ARCHS = ("mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "deepseek_v3")
MOE_KINDS: dict[str, dict] = {
    "experts x2": dict(experts=2),
    "experts x3, 64->96": dict(experts=3, hidden_size=96),
    "expert MLP x1.5": dict(expert_mlp=1.5),
    "experts x2, 64->96, 2->3 layers": dict(experts=2, hidden_size=96, num_layers=3),
    "experts x2, keep top-k (lossy)": dict(experts=2, keep_top_k=True, allow_lossy=True),
}
UPCYCLE_PAIRS = (("llama", "mixtral"), ("mistral", "mixtral"), ("qwen2", "qwen2_moe"))
UPCYCLE_PAIRS += (("qwen3", "qwen3_moe"),)
UPCYCLE_KINDS: dict[str, dict] = {
    "8 experts, 2 per token": {},
    "+ 64->96, 2->3 layers, FFN x1.5": dict(hidden_size=96, num_layers=3, intermediate_size=144),
}


def _moe_targets(model, kind: dict) -> dict:
    from lemonkit.plan.experts import expert_source

    kind = dict(kind)
    src = expert_source(model.config, lemonkit.table_for(model.config.model_type))
    if "experts" in kind:
        kind["num_experts"] = kind.pop("experts") * src["num_experts"]
    factor = kind.pop("expert_mlp", None)
    if factor and src["moe_intermediate_size"]:
        kind["moe_intermediate_size"] = int(src["moe_intermediate_size"] * factor)
    elif factor:
        kind["intermediate_size"] = int(mlp_size(model) * factor)
    return kind


def _cell(small, big) -> str:
    report = lemonkit.verify(small, big)
    return f"{report.rel_error_fp64:.0e} / {report.rel_error_fp32:.0e}"


def measure_moe() -> str:
    """The mixtures of experts' table: more experts, their MLP, width and depth."""
    lines = ["| model type | " + " | ".join(MOE_KINDS) + " |", "|---|" + "---|" * len(MOE_KINDS)]
    for arch in MOE_ARCHS:
        small = build(arch, dtype=torch.float64)
        cells = [
            _cell(small, lemonkit.expand(small, **_moe_targets(small, k)))
            for k in MOE_KINDS.values()
        ]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_upcycle() -> str:
    """Dense -> MoE upcycling, alone and with growth in the same call."""
    lines = ["| dense -> MoE | " + " | ".join(UPCYCLE_KINDS) + " |"]
    lines.append("|---|" + "---|" * len(UPCYCLE_KINDS))
    for dense, to in UPCYCLE_PAIRS:
        small = build(dense, dtype=torch.float64)
        cells = [
            _cell(small, lemonkit.upcycle(small, to, num_experts=8, num_experts_per_tok=2, **k))
            for k in UPCYCLE_KINDS.values()
        ]
        lines.append(f"| {dense} -> {to} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    print("Relative error ||big(x) - small(x)|| / ||small(x)|| on random inputs, float64 / float32")
    print(to_markdown(measure()))
    print()
    print(staged_markdown())
    print()
    print(measure_moe())
    print()
    print(measure_upcycle())


if __name__ == "__main__":
    main()
