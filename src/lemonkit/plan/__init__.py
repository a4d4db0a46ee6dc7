"""Stage 2 of the walk: config + requested sizes -> an :class:`ExpansionPlan` (no weights).

``targets`` (what the user asks for), ``methods`` (the growth operators as tables),
``spaces`` and ``layers`` (index maps per space, layer maps per group), ``layouts`` (a
family's size vocabulary), ``planner`` (:func:`make_plan`), ``decisions`` (each target
tensor's decision, made once) and ``checks`` (names and shapes against the table).
"""

from lemonkit.plan.planner import ExpansionPlan, make_plan
from lemonkit.plan.targets import Options, Targets

__all__ = ["ExpansionPlan", "Options", "Targets", "make_plan"]
