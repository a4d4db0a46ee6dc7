"""lemonkit: lossless model expansion (LEMON, ICLR 2024) for Hugging Face models.

Example:
    >>> import lemonkit
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> small = GPT2LMHeadModel(GPT2Config(n_embd=64, n_head=4, n_layer=2, vocab_size=100))
    >>> big = lemonkit.expand(small, hidden_size=96, num_layers=4, seed=0)
    >>> big.config.n_embd, big.config.n_layer
    (96, 4)
"""

from lemonkit.architectures import register, supported_model_types, table_for
from lemonkit.architectures.base import (
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
from lemonkit.engine import expand_state_dict, expand_tensor, iter_expanded
from lemonkit.errors import (
    CheckpointError,
    ImpossibleExpansionError,
    LemonkitError,
    UnsupportedModelError,
)
from lemonkit.model import expand
from lemonkit.plan import ExpansionPlan, make_plan
from lemonkit.schedule import get_lemon_schedule
from lemonkit.verify import VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
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
    "LemonkitError",
    "UnsupportedModelError",
    "VerifyReport",
    "__version__",
    "expand",
    "expand_state_dict",
    "expand_tensor",
    "get_lemon_schedule",
    "iter_expanded",
    "make_plan",
    "supported_model_types",
    "table_for",
    "verify",
]
