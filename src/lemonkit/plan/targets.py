"""What a user asks for: the target sizes (:class:`Targets`) and how to grow (:class:`Options`).

Both are frozen values, defined once here and read by every shell: the Python API
(``lemonkit.expand(model, hidden_size=96)``), the CLI (one flag per field, generated from
these fields), the planner and the provenance record. A size left at ``None`` keeps the
source's value.

Example:
    >>> targets, options = split_growth({"hidden_size": 96, "layer_map": [0, 0, 1], "seed": 3})
    >>> targets.hidden_size, targets.layer_map, options.seed, options.method
    (96, (0, 0, 1), 3, 'lemon')
    >>> targets.given()
    {'hidden_size': 96, 'layer_map': (0, 0, 1)}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lemonkit.plan.methods import DEPTHS, METHODS, NEW_BLOCK_ROWS, SPLIT_RULES

INT = "int"
INT_LIST = "int list"
INT_OR_LIST = "int or int list"  # one number, or one per stage (Swin's heads)
FLOAT = "float"


def _size(help: str, kind: str = INT) -> Any:
    return field(default=None, metadata={"help": help, "kind": kind})


@dataclass(frozen=True)
class Targets:
    """Target sizes, by their ``lemonkit.expand`` keyword (CLI: ``--hidden-size`` ...)."""

    hidden_size: int | None = _size("width of the residual stream")
    num_layers: int | None = _size("number of blocks")
    num_heads: int | tuple[int, ...] | None = _size(
        "attention heads (default: follow the width, head_dim kept); swinv2: one per stage, "
        "e.g. 3,6",
        INT_OR_LIST,
    )
    num_kv_heads: int | None = _size("key/value heads (default: keep the query heads per KV head)")
    intermediate_size: int | None = _size("MLP hidden size (an MoE's dense MLP, where it has one)")
    moe_intermediate_size: int | None = _size(
        "MoE: each expert's MLP hidden size, where the family has a size of its own for it"
    )
    shared_expert_intermediate_size: int | None = _size("Qwen2-MoE: the shared expert's MLP size")
    num_experts: int | None = _size(
        "MoE: routed experts, a multiple m of the source's (experts per token x m too)"
    )
    layer_map: tuple[int, ...] | None = _size(
        "source layer of each target layer, e.g. 0,0,1,1 (repeats are new blocks)", INT_LIST
    )
    hidden_sizes: tuple[int, ...] | None = _size("staged CNNs: per-stage widths", INT_LIST)
    depths: tuple[int, ...] | None = _size("staged models: per-stage block counts", INT_LIST)
    embedding_size: int | None = _size("staged CNNs: the stem's width")
    embed_dim: int | None = _size("swinv2: the first stage's width (each patch merge doubles it)")
    mlp_ratio: float | None = _size("swinv2: MLP width per stage width (default: kept)", FLOAT)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, kind = getattr(self, f.name), f.metadata["kind"]
            listed = kind == INT_LIST or (kind == INT_OR_LIST and isinstance(value, list | tuple))
            if listed and value is not None:
                object.__setattr__(self, f.name, tuple(int(v) for v in value))

    def given(self) -> dict[str, Any]:
        """The sizes that are set, by name."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _option(default: Any, help: str, rows: dict | None = None, kind: type | None = None) -> Any:
    """An option: its default, its help, for a named operator the table of choices, and
    the type of its value where the default (None) does not say it."""
    return field(default=default, metadata={"help": help, "rows": rows, "type": kind})


@dataclass(frozen=True)
class Options:
    """How to grow: the seed of every random choice, the width method, the depth rule
    (rows of :mod:`lemonkit.plan.methods`), whether a lossy result may be written, and
    whether more experts keep the experts per token (lossy) instead of multiplying them."""

    seed: int = _option(0, "seed of every random choice (splits, extra units)")
    method: str = _option("lemon", "width method", METHODS)
    depth: str = _option("zero", "depth rule", DEPTHS)
    allow_lossy: bool = _option(
        False,
        "where exactness is impossible, do the best approximation and report it; also "
        "allows the lossy baselines (--method aki, --depth stack)",
    )
    keep_top_k: bool = _option(
        False,
        "more experts (--num-experts): keep the experts per token instead of multiplying "
        "them (less compute, lossy: needs --allow-lossy, error reported)",
    )
    new_blocks: str = _option("copy", "where new blocks' free parameters come from", NEW_BLOCK_ROWS)
    split: str | None = _option(
        None, "fan-out split of copies (default: the method's)", SPLIT_RULES
    )
    sigma: float | None = _option(
        None,
        "standard deviation of the paper's free parameters (C.4): new blocks' untying noise; "
        "default 0.02 for image models, 0.002 for language models",
        kind=float,
    )
    spread: float = _option(
        0.7,
        "half-width s of lemonkit's multiplicative split (1 + u v)/c, u, v ~ U(-s, s): "
        "0 gives equal splits (Net2Net-like), below 1 every copy stays exact",
    )


TARGET_NAMES = tuple(f.name for f in fields(Targets))
OPTION_NAMES = tuple(f.name for f in fields(Options))


def split_growth(kwargs: dict[str, Any]) -> tuple[Targets, Options]:
    """Keyword arguments of the API shells -> (``Targets``, ``Options``); an unknown
    keyword raises ``TypeError`` naming the valid ones."""
    unknown = sorted(set(kwargs) - set(TARGET_NAMES) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unknown argument {unknown[0]!r}; expected one of "
            + ", ".join(TARGET_NAMES + OPTION_NAMES)
        )
    targets = Targets(**{k: v for k, v in kwargs.items() if k in TARGET_NAMES})
    options = Options(**{k: v for k, v in kwargs.items() if k in OPTION_NAMES and v is not None})
    return targets, options
