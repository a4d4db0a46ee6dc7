"""The registry of architecture tables, keyed by ``config.model_type``.

Adding an architecture: write a table module beside these (see ``format.py`` for the
format), add it to ``BUILT_IN`` below, and a random-model builder to
``lemonkit/testing/zoo.py`` (the parametrised tests pick it up from there).
"""

from lemonkit.errors import UnsupportedModelError
from lemonkit.tables.bert import BERT
from lemonkit.tables.deepseek import DEEPSEEK_V3
from lemonkit.tables.format import ArchTable
from lemonkit.tables.gpt2 import GPT2
from lemonkit.tables.gpt_oss import GPT_OSS
from lemonkit.tables.llama import (
    GEMMA,
    GEMMA2,
    GEMMA3,
    GRANITE,
    LLAMA,
    MIXTRAL,
    OLMO2,
    QWEN3,
    SMOLLM3,
)
from lemonkit.tables.modernbert import MODERNBERT
from lemonkit.tables.neox import GPT_NEOX, PHI
from lemonkit.tables.opt import OPT
from lemonkit.tables.phi3 import PHI3
from lemonkit.tables.qwen_moe import QWEN2_MOE, QWEN3_MOE
from lemonkit.tables.resnet import RESNET
from lemonkit.tables.roberta_prelayernorm import ROBERTA_PRELAYERNORM
from lemonkit.tables.starcoder2 import STARCODER2
from lemonkit.tables.swinv2 import SWINV2
from lemonkit.tables.vit import VIT

BUILT_IN: tuple[ArchTable, ...] = (
    GPT2,
    LLAMA,
    QWEN3,
    MIXTRAL,
    QWEN2_MOE,
    QWEN3_MOE,
    GPT_OSS,
    DEEPSEEK_V3,
    GEMMA,
    GEMMA2,
    GEMMA3,
    OLMO2,
    PHI3,
    SMOLLM3,
    GRANITE,
    STARCODER2,
    GPT_NEOX,
    PHI,
    OPT,
    VIT,
    ROBERTA_PRELAYERNORM,
    BERT,
    MODERNBERT,
    RESNET,
    SWINV2,
)


TABLES: list[ArchTable] = list(BUILT_IN)  # built-in tables, then registered ones


def register(table: ArchTable) -> ArchTable:
    """Add a table for a model lemonkit does not know (see ``examples/nanogpt.py``).

    A user table names its ``model_class`` and ``config_class`` (the model is built as
    ``model_class(config)``); a later table for the same model type replaces the earlier.
    """
    global TABLES
    TABLES = [t for t in TABLES if not set(t.model_types) & set(table.model_types)] + [table]
    return table


def supported_model_types() -> list[str]:
    return sorted(t for table in TABLES for t in table.model_types)


def table_for(model_type: str) -> ArchTable:
    """The table for a ``config.model_type``; a clear error listing the supported ones."""
    for table in TABLES:
        if model_type in table.model_types:
            return table
    raise UnsupportedModelError(
        f"model type {model_type!r} is not supported; supported: "
        + ", ".join(supported_model_types())
    )


def model_class(config) -> type:
    """The class for a config: a user table's ``model_class``, else the ``transformers``
    class named in ``architectures`` if the table lists it, else the table's first."""
    import transformers

    table = table_for(config.model_type)
    if table.model_class is not None:
        return table.model_class
    archs = getattr(config, "architectures", None)
    archs = archs if isinstance(archs, list | tuple) else []  # an edited config.json
    name = next((a for a in archs if isinstance(a, str) and a in table.classes), table.classes[0])
    return getattr(transformers, name)
