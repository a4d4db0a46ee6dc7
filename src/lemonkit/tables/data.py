"""Tables as data: a JSON or TOML file declaring an :class:`ArchTable`, run as no code.

``lemonkit --table my_arch.json expand ...`` reads the file, validates it and registers
the table; nothing in it is executed (``--plugin`` is the way for Python tables, and it
executes the file). The keys are the fields of :class:`ArchTable` and of the classes it
holds (``config``: :class:`ConfigFields`, ``experts``: :class:`ExpertFields`,
``dense_layers``: :class:`DenseLayers`, ``derived``: a list of :class:`DerivedSpace`),
lists where the table has tuples. An axis is ``null`` (``{}`` in TOML) or one of ``{"out": S}``,
``{"in": S}``, ``{"gamma": S}``, ``{"beta": S}`` with ``S`` a space name or a list of
them (a fused axis); ``per_expert`` is ``{"out": "experts"}`` or ``{"in": "experts"}``.
The model is built by the ``transformers`` class its ``classes`` name, so a data table
describes a ``transformers`` model lemonkit has no table for (or replaces one).

Example:
    >>> from lemonkit.tables.gpt2 import GPT2
    >>> table_from_data(table_to_data(GPT2)) == GPT2
    True
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from lemonkit.errors import LemonkitError
from lemonkit.tables.format import (
    ArchTable,
    Beta,
    ConfigFields,
    DenseLayers,
    DerivedSpace,
    ExpertFields,
    Gamma,
    In,
    Out,
    Tensor,
)

AXES = {"out": Out, "in": In, "gamma": Gamma, "beta": Beta}
NESTED = {"config": ConfigFields, "experts": ExpertFields, "dense_layers": DenseLayers}
CODE_FIELDS = ("model_class", "config_class", "stages")  # not expressible as data here
NORMS = ("layernorm", "rmsnorm")
TASKS = ("causal_lm", "masked_lm", "image_classification", "base")


class TableDataError(LemonkitError):
    """A data table that is not a valid table."""


def register_file(path: str | Path) -> ArchTable:
    """Read, validate and register the table in ``path`` (``.json`` or ``.toml``)."""
    from lemonkit.tables import register

    return register(read_table(Path(path)))


def read_table(path: Path) -> ArchTable:
    if not path.is_file():
        raise TableDataError(f"table {path} does not exist")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        elif path.suffix == ".toml":
            data = tomllib.loads(path.read_text())
        else:
            raise TableDataError(f"table {path}: expected a .json or .toml file")
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, TOMLDecodeError
        raise TableDataError(f"table {path} cannot be parsed: {e}") from e
    try:
        return table_from_data(data)
    except TableDataError as e:
        raise TableDataError(f"table {path}: {e}") from e


def table_from_data(data: Any) -> ArchTable:
    """The validated :class:`ArchTable` a parsed file declares."""
    if not isinstance(data, dict):
        raise TableDataError("the file must hold one table (an object)")
    for key in CODE_FIELDS:
        if key in data:
            raise TableDataError(f"{key!r} cannot be declared as data (use --plugin)")
    values = _fields(ArchTable, data, "table")
    values["tensors"] = tuple(_tensor(t, i) for i, t in enumerate(_list(data, "tensors")))
    for key, cls in NESTED.items():
        if data.get(key) is not None:
            values[key] = cls(**_fields(cls, data[key], key))
    values["derived"] = tuple(
        DerivedSpace(**_fields(DerivedSpace, d, "derived")) for d in data.get("derived", [])
    )
    for key in ("requires", "aliases", "maybe_stream"):
        values[key] = tuple(tuple(x) for x in data.get(key, []))
    if data.get("tie_embeddings") is not None:
        values["tie_embeddings"] = tuple(data["tie_embeddings"])
    table = ArchTable(**values)
    _validate(table)
    return table


def _fields(cls: type, data: Any, where: str) -> dict:
    """The plain fields of dataclass ``cls`` from ``data`` (lists become tuples)."""
    if not isinstance(data, dict):
        raise TableDataError(f"{where} must be an object")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise TableDataError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    missing = [n for n, f in known.items() if f.default is MISSING and n not in data]
    if missing:
        raise TableDataError(f"{where}: missing key {missing[0]!r}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _list(data: dict, key: str) -> list:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise TableDataError(f"{key!r} must be a non-empty list")
    return value


def _tensor(data: Any, i: int) -> Tensor:
    values = _fields(Tensor, data, f"tensor {i}")
    if not isinstance(values.get("name"), str):
        raise TableDataError(f"tensor {i}: 'name' must be a string")
    where = f"tensor {values['name']!r}"
    if not isinstance(data.get("axes"), list):
        raise TableDataError(f"{where}: 'axes' must be a list")
    values["axes"] = tuple(_axis(a, where) for a in data["axes"])
    if data.get("per_expert") is not None:
        values["per_expert"] = _axis(data["per_expert"], where)
    return Tensor(**values)


def _axis(data: Any, where: str):
    if data is None or data == {}:  # TOML has no null: {} says the same
        return None
    if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in AXES:
        raise TableDataError(f"{where}: an axis is null or one of {{{', '.join(AXES)}: space}}")
    ((role, space),) = data.items()
    if isinstance(space, list) and space and all(isinstance(s, str) for s in space):
        space = tuple(space)
    elif not isinstance(space, str):
        raise TableDataError(f"{where}: a space is a name or a list of names, not {space!r}")
    return AXES[role](space)


def _validate(table: ArchTable) -> None:
    import transformers

    if table.norm not in NORMS:
        raise TableDataError(f"norm {table.norm!r}: one of {', '.join(NORMS)}")
    if table.task not in TASKS:
        raise TableDataError(f"task {table.task!r}: one of {', '.join(TASKS)}")
    if not table.model_types or not all(isinstance(t, str) for t in table.model_types):
        raise TableDataError("model_types must be a non-empty list of names")
    for name in table.classes:
        if not isinstance(getattr(transformers, str(name), None), type):
            raise TableDataError(f"class {name!r} is not a transformers class")
    names = [t.name for t in table.tensors]
    if len(set(names)) != len(names):
        raise TableDataError("a tensor is listed twice")
    known = {*names, *(a for pair in table.aliases for a in pair)}
    for name in (*table.vocab, *(table.tie_embeddings or ())):
        if name not in known:
            raise TableDataError(f"{name!r} is named but not among the tensors")


def table_to_data(table: ArchTable) -> dict:
    """The data form of a table (the inverse of :func:`table_from_data`)."""
    if table.model_class or table.config_class or table.stages:
        raise TableDataError("this table holds code or stages: it has no data form")
    return _plain(table)


def _plain(value: Any) -> Any:
    if isinstance(value, Out | In | Gamma | Beta):
        role = {Out: "out", In: "in", Gamma: "gamma", Beta: "beta"}[type(value)]
        return {role: _plain(value.space)}
    if is_dataclass(value):
        out = {}
        for f in fields(value):
            v = getattr(value, f.name)
            if v != f.default and f.name not in CODE_FIELDS:
                out[f.name] = _plain(v)
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
