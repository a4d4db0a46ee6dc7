"""Config files for ``lemonkit expand / upcycle / plan``: ``--config`` and ``--save-config``.

A config is a YAML (or JSON) mapping whose keys are the command's options, spelled as
the flags without their dashes (``hidden_size`` or ``hidden-size``, ``src``, ``out``,
``method`` ...). Flags given on the command line override it. ``--save-config FILE``
writes every option of the run (the defaults included), and ``lemonkit.json`` records the
same mapping under ``"config"``, so ``--config OUT/lemonkit.json`` replays a run.

Example::

    # grow.yaml
    src: HuggingFaceTB/SmolLM2-135M
    out: big/
    hidden_size: 1152
    num_layers: 40

    lemonkit expand --config grow.yaml --seed 1      # the file, with another seed
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from lemonkit.errors import LemonkitError

# parser entries that are not options of the run
NOT_RECORDED = {"help", "config", "save_config", "quiet", "func", "command", "plugin"}
CONFIG_KEY = "config"  # where lemonkit.json keeps the run's config


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-parser of ``command``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)  # pragma: no cover - every lemonkit parser has commands


def options_of(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The command's recorded options by name (positionals and flags)."""
    return {a.dest: a for a in sub._actions if a.dest not in NOT_RECORDED}


def read_config(path: str) -> dict[str, Any]:
    """A YAML / JSON mapping; a ``lemonkit.json`` gives the config it recorded."""
    file = Path(path)
    if not file.is_file():
        raise LemonkitError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(file.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise LemonkitError(f"config file {path} is not valid YAML ({_first_line(e)})") from e
    if isinstance(data, dict) and "lemonkit_version" in data and CONFIG_KEY in data:
        data = data[CONFIG_KEY]  # a provenance record: replay its run
        if data is None:
            raise LemonkitError(f"{path} records no config (written by the Python API)")
    if not isinstance(data, dict):
        raise LemonkitError(f"config file {path} must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def apply_config(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None
) -> argparse.Namespace:
    """Parse again with the config file's values as defaults: flags still win."""
    path = getattr(args, "config", None)
    if not path:
        return args
    sub = command_parser(parser, args.command)
    values = check_values(sub, read_config(path), path)
    sub.set_defaults(**values)
    return parser.parse_args(argv)


def check_values(sub: argparse.ArgumentParser, values: dict[str, Any], path: str) -> dict[str, Any]:
    """The values as the flags would give them (argparse does not convert defaults that
    are not strings: a YAML ``3.0`` or ``[1, 2]`` would reach the planner as it is).
    Unknown keys and values of the wrong kind: one line naming the key."""
    options = options_of(sub)
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise LemonkitError(
            f"config file {path}: unknown key {unknown[0]!r}; expected one of "
            + ", ".join(sorted(options))
        )
    for key, value in values.items():
        action = options[key]
        if value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction) and not isinstance(value, bool):
            raise LemonkitError(f"config file {path}: {key} must be true or false")
        if action.choices is not None and value not in action.choices:
            raise LemonkitError(
                f"config file {path}: {key} must be one of {', '.join(map(str, action.choices))}"
            )
    return {k: _typed(options[k], k, v, path) for k, v in values.items()}


def _typed(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    """``value`` through the flag's type, as its text on the command line would go (a
    list as ``a,b``; a list of one as ``a,``)."""
    if action.type is None or value is None:
        return value
    if isinstance(value, list):
        text = ",".join(map(str, value)) + ("," if len(value) == 1 else "")
    else:
        text = str(value)
    try:
        return action.type(text)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise LemonkitError(f"config file {path}: {key}: invalid value {value!r} ({e})") from e


def run_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Every option of the run, as a config file would give it."""
    sub = command_parser(parser, args.command)
    return {k: _plain(getattr(args, k, None)) for k in options_of(sub)}


def save_config(config: dict[str, Any], path: str) -> None:
    """Write ``config`` as YAML (JSON if ``path`` ends in .json)."""
    file = Path(path)
    if file.suffix == ".json":
        text = json.dumps(config, indent=2) + "\n"
    else:
        text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    try:
        file.write_text(text)
    except OSError as e:
        raise LemonkitError(f"cannot write the config to {path} ({e.strerror})") from e


def _plain(value: Any) -> Any:
    """Tuples as lists (YAML and JSON both read them back as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _first_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200]
