"""Stage 3 of the walk: a plan and one source tensor -> its target tensor.

``rules`` is the paper's algebra on one axis (producer copies, consumer splits, norms),
``runs`` the scanner of consecutive source indices, ``tensor`` the per-tensor engine that
executes a :class:`~lemonkit.plan.decisions.Decision` (and the state-dict helpers).
"""

from lemonkit.engine.tensor import (
    expand_state_dict,
    expand_tensor,
    iter_expand_tensor,
    iter_expanded,
)

__all__ = ["expand_state_dict", "expand_tensor", "iter_expand_tensor", "iter_expanded"]
