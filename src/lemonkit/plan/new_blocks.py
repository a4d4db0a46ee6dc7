"""How a new block's tensors are made, beyond its source block's copy: the choices of
:class:`~lemonkit.plan.targets.Options` that only new blocks see (read by
:mod:`lemonkit.plan.decisions`, and ``cancel_axis`` by the engine).

- ``untie_sigma``: type-1 blocks (zeroed last linear) of a symmetry-breaking method give
  their replicated units N(0, sigma^2) noise on their fan-in.
- ``cancel_axis``: type-2 blocks (``depth="cancel"``): the axis along which the branch
  output cancels (:mod:`lemonkit.plan.cancel`).
- ``next_source``: ``new_blocks="next"`` (LEMON C.4 for language models, after AKI): the
  block's free parameters come from the next adjacent source layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lemonkit.plan.cancel import paired_spaces
from lemonkit.tables.format import In, Out, Tensor


def untie_sigma(plan: Any, spec: Tensor, is_new: bool, shape: tuple, axes: tuple) -> float:
    """A weight of a new block whose residual branch ends in a zeroed linear: its
    replicated units would compute the same outputs, feed identical (zero) fan-out and get
    identical gradients for ever. With a width method that breaks symmetry, their fan-in
    gets N(0, sigma^2) noise (lossless: nothing the block computes reaches its output).
    Returns sigma, or 0.0 where no noise is added."""
    untie = (
        is_new
        and plan.width_method.untie_new
        and plan.depth_rule.zero_branch
        and not plan.depth_rule.cancel
        and not spec.branch_out
        and len(shape) >= 2
        and any(isinstance(r, Out) for r in axes)
    )
    return plan.sigma if untie else 0.0


def cancel_axis(plan: Any, shape: tuple, axes: tuple) -> int | None:
    """The axis along which a new block's branch output cancels (depth ``cancel``): the
    consumer axis of a weight reading a paired space (None: it stays zero, a bias)."""
    if not plan.depth_rule.cancel or len(shape) < 2:
        return None
    paired = paired_spaces(plan.maps)
    for axis, rule in enumerate(axes):
        if isinstance(rule, In) and isinstance(rule.space, str) and rule.space in paired:
            return axis
    return None


def next_source(plan: Any, spec: Tensor, source: str, t: int, tensors: Mapping[str, tuple]) -> str:
    """``new_blocks="next"``: the same tensor of the next source layer, where it exists
    with the same shape (else ``source``). Norms that Post-LN depth moves, a branch's
    last linear and stand-ins keep their own source."""
    if plan.options.new_blocks != "next" or spec.branch_out or spec.post_ln or spec.stand_in:
        return source
    group = plan.group_of(spec.group)
    nxt = spec.with_layer(source, group.layer_map[t] + 1)
    if nxt not in tensors or tuple(tensors[nxt][1]) != tuple(tensors[source][1]):
        return source
    return nxt
