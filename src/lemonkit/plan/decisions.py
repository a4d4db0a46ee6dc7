"""Each target tensor's decision, made once: where it comes from and how it is made.

:func:`decide` checks a checkpoint's names and shapes against the table and the plan,
walks the layer groups, and returns one :class:`Decision` per target tensor, in the
order they are written. The engine executes a decision, the writer lays out the saved
ones, and ``lemonkit plan`` prints them: none of them works a decision out again.

Example:
    >>> import torch
    >>> from transformers import GPT2Config
    >>> from lemonkit.plan import make_plan
    >>> plan = make_plan(GPT2Config(n_embd=64, n_head=4, n_layer=1), num_layers=2)
    >>> name = "transformer.h.0.mlp.c_proj.weight"
    >>> d = decide(plan, {name: (torch.float32, (256, 64))}, check=False)[1]
    >>> d.name, d.source, d.op, d.shape
    ('transformer.h.1.mlp.c_proj.weight', 'transformer.h.0.mlp.c_proj.weight', 'zero', (256, 64))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import torch

from lemonkit.errors import CheckpointError
from lemonkit.plan.checks import check_names, match_or_raise, source_axes_sizes, space_size
from lemonkit.plan.layers import DEFAULT_GROUP
from lemonkit.plan.new_blocks import cancel_axis, next_source, untie_sigma
from lemonkit.plan.planner import ExpansionPlan
from lemonkit.plan.spaces import EXPERTS, HIDDEN
from lemonkit.tables.format import AxisRule, Beta, Gamma, In, Out, Tensor, space_names

Op = Literal["expand", "zero", "cancel", "identity", "keep"]
TensorInfo = tuple[torch.dtype, tuple[int, ...]]  # a source tensor's dtype and shape


@dataclass(frozen=True)
class Decision:
    """One target tensor.

    ``op``: ``"expand"`` (the width rules of its axes), ``"zero"`` (a new block's
    residual-branch output, depth rule ``zero``), ``"identity"`` (a norm that passes its
    normalised input through: Post-LN depth, NOTES.md 6) or ``"keep"`` (an integer
    buffer). ``axes``: the rule of each axis (a tied head has its embedding's).
    ``seed_name``: the name its random choices are seeded by (a tied head: the
    embedding's, so both come out equal). ``saved``: False for a tied head, which
    ``transformers`` does not save. ``donor``: bert2BERT-AKI's next-layer tensor whose
    expansion (seeded as ``donor_seed``) gives the new units their rows. The factors,
    applied in this order: ``stream_scale`` (1/eta on what writes the stream of a
    fixed-eps model), ``embedding_ratio`` (Gemma's sqrt(hidden) compensation), and
    ``norm_scale`` (a norm feeding a tied head: 1/k, NOTES.md 2). ``approximate``: its
    rule cannot be exact here (a stream norm at an indivisible width, NOTES.md 10).
    ``expert_copy``: a per-expert tensor that writes the expert's output, in a target
    with several copies of its expert: (rank, copies); the copies split it with random
    numbers seeded by ``expert_seed``, which they share
    (:func:`lemonkit.engine.rules.expert_piece`). ``untie``: the standard deviation of
    the noise a new block's replicated units get on their fan-in (0: none), see
    :func:`~lemonkit.plan.new_blocks.untie_sigma`. ``paired``: a tensor of a type-2 new
    block (depth ``cancel``): its paired units' partners take their leaders' entries;
    the branch's last linear is then ``op="cancel"`` (:mod:`lemonkit.plan.cancel`).
    """

    name: str
    source: str
    spec: Tensor
    op: Op
    axes: tuple[AxisRule, ...]
    seed_name: str
    dtype: torch.dtype
    source_shape: tuple[int, ...]
    shape: tuple[int, ...]
    is_new: bool = False
    saved: bool = True
    donor: str | None = None
    donor_seed: str | None = None
    stream_scale: float = 1.0
    embedding_ratio: float = 1.0
    norm_scale: float = 1.0
    approximate: bool = False
    expert_copy: tuple[int, int] | None = None
    expert_seed: str | None = None
    untie: float = 0.0
    paired: bool = False

    @property
    def entry(self) -> tuple[str, torch.dtype, tuple[int, ...]]:
        """(name, dtype, shape): the writer's layout entry."""
        return self.name, self.dtype, self.shape


def decide(
    plan: ExpansionPlan,
    tensors: Mapping[str, TensorInfo],
    *,
    out_dtype: torch.dtype | None = None,
    check: bool = True,
    for_checkpoint: bool = False,
) -> list[Decision]:
    """Every target tensor's decision: non-layer tensors first, then each group's layers
    in target order. ``tensors``: each source tensor's dtype and shape (a checkpoint
    header or a state dict). ``out_dtype`` applies to floating-point tensors (default:
    each source's). ``check``: refuse unknown, misplaced or missing tensors first.
    ``for_checkpoint``: the target is saved for ``from_pretrained`` (tensors the class
    keeps in float32 are written in float32 at most)."""
    names = list(tensors)
    if check:
        check_names(plan, names)
    present = set(names)
    per_layer: dict[tuple[str | None, int], list[tuple[str, Tensor]]] = {}
    walk: list[tuple[str, str, Tensor, bool, int | None]] = []  # target, source, spec, new, t
    for name in names:
        spec, layer = match_or_raise(plan.table, name)
        if layer is None:
            walk.append((name, name, spec, False, None))
        else:
            per_layer.setdefault((spec.group or DEFAULT_GROUP, layer), []).append((name, spec))
    decisions = [_decision(plan, tensors, present, out_dtype, *item) for item in walk]
    for group in plan.groups.values():
        for t, s in enumerate(group.layer_map):
            for name, spec in per_layer.get((group.name, s), []):
                for target in _expert_copies(plan, spec, spec.with_layer(name, t)):
                    item = (target, name, spec, group.new[t], t)
                    d = _decision(plan, tensors, present, out_dtype, *item)
                    decisions.append(_expert_split(plan, d))
            new = group.new[t]
            decisions += _stand_ins(plan, tensors, present, out_dtype, group.name, s, t, new)
    return [_as_loaded(d) for d in decisions] if for_checkpoint else decisions


def _expert_copies(plan: ExpansionPlan, spec: Tensor, name: str) -> list[str]:
    """A per-expert tensor's name for every target copy of its expert (else the name)."""
    if spec.per_expert is None:
        return [name]
    e = spec.expert_of(name)
    sources = plan.maps[EXPERTS].sources
    return [spec.with_expert(name, j) for j, s in enumerate(sources) if s == e]


def _expert_split(plan: ExpansionPlan, d: Decision) -> Decision:
    """A per-expert tensor writing the output of an expert with several copies: which
    copy it is, and the seed name the copies share."""
    if d.op != "expand" or not isinstance(d.spec.per_expert, In):
        return d
    sources = plan.maps[EXPERTS].sources
    j = d.spec.expert_of(d.name)
    copies = [i for i, s in enumerate(sources) if s == sources[j]]
    if len(copies) == 1:
        return d
    shared = d.spec.with_expert(d.name, sources[j]) + "#experts"
    return replace(d, expert_copy=(copies.index(j), len(copies)), expert_seed=shared)


def _stand_ins(
    plan: ExpansionPlan,
    tensors: Mapping[str, TensorInfo],
    present: set[str],
    out_dtype: torch.dtype | None,
    group: str,
    s: int,
    t: int,
    is_new: bool,
) -> list[Decision]:
    """Norms that source layer ``s`` lacks but target layer ``t`` has (ModernBERT's first
    layer has no attention norm): identity norms, shaped like the layer's ``stand_in``."""
    made = []
    for spec in plan.table.tensors:
        if not spec.stand_in or (spec.group or DEFAULT_GROUP) != group or t in spec.absent_in:
            continue
        if spec.name.replace("{i}", str(s)) in present:
            continue
        stand_in = spec.stand_in.replace("{i}", str(s))
        if stand_in not in present:
            continue  # the layer lacks the stand-in as well (a norm without bias)
        target = spec.name.replace("{i}", str(t))
        item = (target, stand_in, spec, is_new, t)
        d = _decision(plan, tensors, present, out_dtype, *item)
        made.append(replace(d, op="identity", donor=None, donor_seed=None))
    return made


def _decision(
    plan: ExpansionPlan,
    tensors: Mapping[str, TensorInfo],
    present: set[str],
    out_dtype: torch.dtype | None,
    name: str,
    source: str,
    spec: Tensor,
    is_new: bool,
    t: int | None,
) -> Decision:
    dtype, shape = tensors[source]
    axes = _effective_axes(plan, spec)
    _check_shape(plan, axes, source, shape)
    floating = dtype.is_floating_point
    d = Decision(
        name=name,
        source=source,
        spec=spec,
        op="expand" if floating else "keep",
        axes=axes,
        seed_name=_seed_name(plan, spec, name),
        dtype=(out_dtype or dtype) if floating else dtype,
        source_shape=tuple(shape),
        shape=tuple(
            dim if rule is None else space_size(plan.maps, rule.space, "tgt")
            for dim, rule in zip(shape, axes, strict=True)
        ),
        is_new=is_new,
        saved=not _is_tied_head(plan, spec),
    )
    if not floating:  # integer: kept as it is, or zeros where a new block's branch ends
        new_branch = is_new and spec.branch_out and plan.depth_rule.zero_branch
        return replace(d, op="zero") if new_branch else d
    if is_new and spec.branch_out and plan.depth_rule.zero_branch:
        return replace(d, op="cancel" if cancel_axis(plan, d.shape, axes) is not None else "zero")
    if t is not None and plan.depth_rule.zero_branch:  # stacked blocks keep every norm
        d = _post_ln(plan, d, t)
        if d.op == "identity":
            return d
    d = _aki_donor(plan, d, t, tensors, present)
    if is_new:
        d = replace(
            d,
            source=next_source(plan, spec, d.source, t, tensors),
            untie=untie_sigma(plan, spec, is_new, d.shape, axes),
            paired=plan.depth_rule.cancel,
        )
    scaled = plan.table.embed_scale_sqrt_hidden and _is_embedding(plan, spec)
    return replace(
        d,
        stream_scale=plan.stream_scale if _writes_stream(plan, axes) else 1.0,
        embedding_ratio=embedding_ratio(plan, d.dtype) if scaled else 1.0,
        norm_scale=_norm_scale(plan, spec, axes, d.dtype),
        approximate=spec.stream_norm and plan.maps[HIDDEN].eta != 1.0,
    )


def _as_loaded(d: Decision) -> Decision:
    """A tensor the class keeps in float32 is written in float32 at most: from_pretrained
    rounds it so, and its splits must be exact in that dtype."""
    if d.spec.kept_float32 and d.dtype.is_floating_point and d.dtype.itemsize > 4:
        return replace(d, dtype=torch.float32)
    return d


def _effective_axes(plan: ExpansionPlan, spec: Tensor) -> tuple[AxisRule, ...]:
    """A tied head is expanded exactly like the embedding it shares weights with."""
    if _is_tied_head(plan, spec):
        return match_or_raise(plan.table, plan.table.tie_embeddings[1])[0].axes
    return spec.axes


def _is_tied_head(plan: ExpansionPlan, spec: Tensor) -> bool:
    tie = plan.table.tie_embeddings
    return bool(plan.tied and tie and spec.name == tie[0])


def _seed_name(plan: ExpansionPlan, spec: Tensor, name: str) -> str:
    return plan.table.tie_embeddings[1] if _is_tied_head(plan, spec) else name


def _check_shape(plan: ExpansionPlan, axes, name: str, shape: tuple[int, ...]) -> None:
    """A source tensor's shape must match what the source config says."""
    expected = source_axes_sizes(plan, axes)
    ok = len(expected) == len(shape) and all(
        e is None or e == s for e, s in zip(expected, shape, strict=False)
    )
    if not ok:
        raise CheckpointError(
            f"tensor {name} has shape {tuple(shape)}, which does not match the config "
            f"(expected {['*' if e is None else e for e in expected]})"
        )


def _writes_stream(plan: ExpansionPlan, axes) -> bool:
    return any(
        isinstance(rule, Out) and any(plan.maps[n].name == HIDDEN for n in space_names(rule.space))
        for rule in axes
    )


def _is_embedding(plan: ExpansionPlan, spec: Tensor) -> bool:
    """The input embedding that the model scales, or a head tied to it."""
    return spec.name == plan.table.embed_scale_sqrt_hidden or _is_tied_head(plan, spec)


def embedding_ratio(plan: ExpansionPlan, dtype: torch.dtype) -> float:
    """c = s(Ds) / s(Dt) with s(D) = sqrt(D) rounded to the weight dtype, as
    ``from_pretrained`` initialises Gemma's ``embed_scale``, so E* s(Dt) = [E..., 0] s(Ds)."""

    def s(d: int) -> float:
        return float(torch.tensor(d**0.5, dtype=dtype))

    return s(plan.source.hidden_size) / s(plan.target.hidden_size)


def _norm_scale(plan: ExpansionPlan, spec: Tensor, axes, dtype: torch.dtype) -> float:
    """A norm feeding a tied head that reads the stream: 1/(k x stream scale), and the
    embedding ratio undone (the head reads with the grown embedding: k copies)."""
    if isinstance(axes[0], Gamma | Beta) and spec.post_branch:
        return plan.stream_scale  # its output is added to the (scaled) stream
    if not (isinstance(axes[0], Gamma | Beta) and spec.tied_head_norm and plan.tied):
        return 1.0
    if not _head_reads_stream(plan):
        return 1.0
    space = plan.maps[axes[0].space]
    scale = 1.0 / (space.copies * plan.stream_scale)
    if plan.table.embed_scale_sqrt_hidden:
        scale /= embedding_ratio(plan, dtype)
    return scale


def _head_reads_stream(plan: ExpansionPlan) -> bool:
    """Whether the tied embedding lives in the stream (not in a kept projection space)."""
    embedding = match_or_raise(plan.table, plan.table.tie_embeddings[1])[0]
    return _writes_stream(plan, embedding.axes)


def _aki_donor(
    plan: ExpansionPlan,
    d: Decision,
    t: int | None,
    tensors: Mapping[str, TensorInfo],
    present: set[str],
) -> Decision:
    """bert2BERT-AKI: a layer tensor with a producer axis takes its new units' rows from
    the same tensor of the next source layer (expanded as that layer's first copy is);
    the top source layer keeps its own."""
    if t is None or not plan.width_method.donor or not any(isinstance(r, Out) for r in d.axes):
        return d
    group = plan.group_of(d.spec.group)
    s = group.layer_map[t]
    if s + 1 not in group.layer_map:
        return d
    donor = d.spec.with_layer(d.source, s + 1)
    if donor not in present:  # an optional tensor the next layer lacks
        return d
    if tuple(tensors[donor][1]) != d.source_shape:
        raise CheckpointError(
            f"tensor {d.name}: the next layer's {donor} has shape {tuple(tensors[donor][1])}, "
            f"not {d.source_shape} (method aki needs equal layers)"
        )
    donor_seed = d.spec.with_layer(d.name, group.layer_map.index(s + 1))
    return replace(d, donor=donor, donor_seed=donor_seed)


def _post_ln(plan: ExpansionPlan, d: Decision, t: int) -> Decision:
    """Post-LN depth by moving the affine (NOTES.md 6): the output norm of a block that a
    new block follows becomes the identity; the last new block of a run takes the output
    norm of the original block that starts the run; new blocks' inner norms are identity."""
    kind = d.spec.post_ln
    if kind == "inner":
        return replace(d, op="identity") if d.is_new else d
    if kind != "out":
        return d
    group = plan.group_of(d.spec.group)
    if t + 1 < len(group.layer_map) and group.new[t + 1]:
        return replace(d, op="identity")
    start = group.run_start(t)
    return replace(d, source=d.spec.with_layer(d.source, group.layer_map[start]))
