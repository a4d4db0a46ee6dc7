"""lemonkit: lossless model expansion (LEMON, ICLR 2024) for Hugging Face models.

Example:
    >>> import lemonkit
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> small = GPT2LMHeadModel(GPT2Config(n_embd=64, n_head=4, n_layer=2, vocab_size=100))
    >>> big = lemonkit.expand(small, hidden_size=96, num_layers=4, seed=0)
    >>> big.config.n_embd, big.config.n_layer
    (96, 4)
"""

from lemonkit.engine import expand_state_dict, expand_tensor, iter_expanded
from lemonkit.errors import (
    CheckpointError,
    ImpossibleExpansionError,
    LemonkitError,
    UnsupportedModelError,
)
from lemonkit.module import expand, upcycle
from lemonkit.plan import ExpansionPlan, Options, Targets, make_plan
from lemonkit.plan.methods import DEPTHS, METHODS
from lemonkit.recipe.ki import ki_alpha, ki_loss
from lemonkit.recipe.schedule import get_lemon_schedule
from lemonkit.tables import register, supported_model_types, table_for
from lemonkit.tables.format import (
    HEADS,
    HIDDEN,
    KV_HEADS,
    MLP,
    ArchTable,
    Beta,
    ConfigFields,
    Gamma,
    In,
    Out,
    Tensor,
    layer_norm,
    linear,
)
from lemonkit.verification.compare import VerifyReport, verify
from lemonkit.verification.symmetry import tied_units

__version__ = "0.1.0"

# lemonkit.recipe.trainer imports transformers.Trainer (seconds); loaded on first use only
_LAZY = {"LemonArguments": "lemonkit.recipe.trainer", "LemonTrainer": "lemonkit.recipe.trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lemonkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEPTHS",
    "METHODS",
    "HEADS",
    "HIDDEN",
    "KV_HEADS",
    "MLP",
    "Options",
    "Targets",
    "ArchTable",
    "Beta",
    "ConfigFields",
    "Gamma",
    "In",
    "Out",
    "Tensor",
    "layer_norm",
    "linear",
    "register",
    "CheckpointError",
    "ExpansionPlan",
    "ImpossibleExpansionError",
    "LemonArguments",
    "LemonTrainer",
    "LemonkitError",
    "UnsupportedModelError",
    "VerifyReport",
    "__version__",
    "expand",
    "expand_state_dict",
    "expand_tensor",
    "get_lemon_schedule",
    "iter_expanded",
    "ki_alpha",
    "ki_loss",
    "make_plan",
    "supported_model_types",
    "table_for",
    "tied_units",
    "upcycle",
    "verify",
]
