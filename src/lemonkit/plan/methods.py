"""The growth operators, as tables: width methods and depth rules.

Every layer consults these rows and nothing else: the planner (lossy reasons, default
layer maps, what staged CNNs allow), the per-tensor decisions (zeroed branches, AKI
donors), the engine (the split rule of consumer axes), the CLI (choices and help) and
the provenance (notes). Adding an operator is adding a row here and, if it needs new
arithmetic, a rule in :mod:`lemonkit.engine.rules`.

Example:
    >>> METHODS["net2net"].split, DEPTHS["stack"].zero_branch
    ('equal', False)
    >>> lossy_reason(width("aki"), depth_rule("zero"))[:30]
    'method aki (bert2BERT-AKI) giv'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lemonkit.errors import ImpossibleExpansionError
from lemonkit.plan.layers import default_layer_map, stack_layer_map


@dataclass(frozen=True)
class WidthMethod:
    """How replicated units share their fan-out, and where new units' fan-in comes from.

    ``split``: the consumer-axis rule of :func:`lemonkit.engine.rules.expand_in`
    (``"lemon"``: unequal per-element fractions; ``"equal"``: 1/n). ``donor``: the new
    units' rows come from the same tensor of the next source layer (bert2BERT-AKI).
    ``untie_new``: in a new block whose branch output is zeroed, replicated units get
    their own N(0, sigma^2) noise on their fan-in (else they would stay tied for ever).
    """

    name: str
    split: str
    donor: bool
    lossy_reason: str | None
    split_text: str  # the consumer-axis rule in words, for ``lemonkit plan``
    summary: str  # a few words, for the CLI's help
    note: str  # one sentence, for the provenance record
    staged: bool = True  # defined for staged CNNs
    untie_new: bool = False  # new blocks' replicated units get noise on their fan-in


@dataclass(frozen=True)
class DepthRule:
    """How new blocks start: ``zero_branch``: their residual branch adds zero (exact;
    Post-LN tables also move the output norm's affine), by a zeroed last linear (type 1),
    or with ``cancel`` by paired units whose fan-out cancels (type 2, LEMON figure 5c,
    :mod:`lemonkit.plan.cancel`); ``layer_map`` places them when no explicit map is given."""

    name: str
    zero_branch: bool
    layer_map: Callable[[int, int], list[int]]
    lossy_reason: str | None
    summary: str
    note: str
    staged: bool = True
    cancel: bool = False  # type 2: paired units with cancelling fan-out instead of zeros


METHODS: dict[str, WidthMethod] = {
    m.name: m
    for m in (
        WidthMethod(
            "lemon",
            split="lemon",
            donor=False,
            lossy_reason=None,
            split_text="unequal split",
            summary="unequal splits, default",
            note=(
                "unequal per-element fan-out splits, weights U(0.5, 1.5) normalised per copy "
                "group (LEMON 4.1); free columns N(0, std(W)^2); extra norm scales U(-1, 1) "
                "(C.4); new blocks: copies of their source block with fresh splits, their "
                "replicated units' fan-in with N(0, sigma^2) noise"
            ),
            untie_new=True,
        ),
        WidthMethod(
            "net2net",
            split="equal",
            donor=False,
            lossy_reason=None,
            split_text="equal split",
            summary="equal splits",
            note="equal 1/n fan-out splits (Net2Net / bert2BERT-FPI): replicas stay identical",
        ),
        WidthMethod(
            "aki",
            split="equal",
            donor=True,
            split_text="equal split",
            lossy_reason=(
                "method aki (bert2BERT-AKI) gives new units the next layer's fan-in, which "
                "changes the function"
            ),
            summary="bert2BERT-AKI baseline, lossy: needs --allow-lossy",
            note=(
                "bert2BERT-AKI: equal 1/n fan-out splits (FPI), then the new units' fan-in "
                "(their rows in each layer's tensors) copied from the FPI expansion of the next "
                "source layer (the top layer keeps its own): not lossless"
            ),
            staged=False,
        ),
    )
}

DEPTHS: dict[str, DepthRule] = {
    d.name: d
    for d in (
        DepthRule(
            "zero",
            zero_branch=True,
            layer_map=default_layer_map,
            lossy_reason=None,
            summary="new blocks' branch output zeroed, lossless, default",
            note="new blocks copy their source block with the residual branch's last linear zeroed",
        ),
        DepthRule(
            "cancel",
            zero_branch=True,
            layer_map=default_layer_map,
            lossy_reason=None,
            summary="type-2 depth (LEMON fig. 5c): paired units, cancelling fan-out, lossless",
            note=(
                "type-2 depth (LEMON figure 5c): new blocks copy their source block; their "
                "units pair up (copies two by two, else units 2i and 2i+1, the partner taking "
                "its leader's fan-in) and the branch's last linear gives a pair alpha and "
                "-alpha, alpha ~ N(0, sigma^2) (C.4), exactly negated in the storage dtype"
            ),
            staged=False,
            cancel=True,
        ),
        DepthRule(
            "stack",
            zero_branch=False,
            layer_map=stack_layer_map,
            lossy_reason=(
                "depth stack (StackBERT) keeps new blocks' residual branches, which changes "
                "the function"
            ),
            summary="StackBERT baseline: the stack repeated, nothing zeroed, lossy: needs "
            "--allow-lossy",
            note=(
                "StackBERT: new blocks are copies of their source block (default map: the whole "
                "stack repeated on top), residual branches kept: not lossless"
            ),
            staged=False,
        ),
    )
}


@dataclass(frozen=True)
class SplitRule:
    """A consumer-axis split that ``split=`` may choose over the width method's."""

    name: str
    split_text: str
    summary: str
    note: str


SPLIT_RULES: dict[str, SplitRule] = {
    r.name: r
    for r in (
        SplitRule(
            "lemon",
            "unequal split",
            "lemonkit's multiplicative split (1 + u v)/c",
            "unequal per-element fan-out splits (1 + u v)/c, u, v ~ U(-0.7, 0.7) (lemonkit)",
        ),
        SplitRule(
            "paper",
            "additive split W/c + Phi",
            "LEMON C.4's additive split W/c + Phi, Phi ~ N(0, sigma^2)",
            "additive fan-out splits W/c + Phi_j, Phi ~ N(0, sigma^2), the last copy the exact "
            "remainder (LEMON C.4); Phi clipped where an element cannot hold it exactly",
        ),
        SplitRule("equal", "equal split", "1/c (Net2Net)", "equal 1/c fan-out splits"),
    )
}


@dataclass(frozen=True)
class NewBlocks:
    """Where a new block's free parameters come from (``new_blocks=``)."""

    name: str
    summary: str


NEW_BLOCK_ROWS: dict[str, NewBlocks] = {
    "copy": NewBlocks("copy", "copies of the source block they follow, default"),
    "next": NewBlocks(
        "next", "from the next adjacent source layer (LEMON C.4 for language models, AKI-like)"
    ),
}


def split_rule(name: str) -> SplitRule:
    """The row of a split rule; an unknown name is refused with the valid ones."""
    if name not in SPLIT_RULES:
        raise ImpossibleExpansionError(f"split must be one of {tuple(SPLIT_RULES)}, got {name!r}")
    return SPLIT_RULES[name]


def width(name: str) -> WidthMethod:
    """The row of a width method; an unknown name is refused with the valid ones."""
    if name not in METHODS:
        raise ImpossibleExpansionError(f"method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]


def depth_rule(name: str) -> DepthRule:
    """The row of a depth rule; an unknown name is refused with the valid ones."""
    if name not in DEPTHS:
        raise ImpossibleExpansionError(f"depth must be one of {tuple(DEPTHS)}, got {name!r}")
    return DEPTHS[name]


def lossy_reason(method: WidthMethod, depth: DepthRule) -> str | None:
    """Why a choice of operators is not lossless, or None."""
    return "; ".join(r for r in (method.lossy_reason, depth.lossy_reason) if r) or None


def choices_help(rows: dict) -> str:
    """``"lemon (unequal splits, default), net2net (...)"``: the CLI's help for a table."""
    return ", ".join(f"{name} ({row.summary})" for name, row in rows.items())
