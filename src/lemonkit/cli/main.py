"""``lemonkit`` command line: expand, upcycle, verify, plan, list.

Every failure becomes one line on stderr and exit status 2, never a traceback
(``cli/errors.py``: the contract; ``--debug`` shows the traceback of an unexpected one);
exit 1 means verification found the output not lossless. ``--quiet`` silences progress
bars and results.

Example::

    lemonkit expand small/ big/ --hidden-size 768 --num-layers 12
    lemonkit upcycle llama/ moe/ --to mixtral --num-experts 8 --experts-per-token 2
    lemonkit verify small/ big/
    lemonkit expand HuggingFaceTB/SmolLM2-135M big/ --hidden-size 1152   # a Hub repo id
    lemonkit expand --config grow.yaml --save-config used.yaml
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import fields

from lemonkit.cli.commands import DTYPES, cmd_expand, cmd_list, cmd_plan, cmd_upcycle, cmd_verify
from lemonkit.cli.errors import (
    EXIT_ERROR,
    EXIT_NOT_LOSSLESS,
    OneLineParser,
    interrupted,
    report_error,
)
from lemonkit.errors import LemonkitError
from lemonkit.plan.methods import choices_help
from lemonkit.plan.targets import (
    FLOAT,
    INT,
    INT_LIST,
    INT_OR_LIST,
    Options,
    Targets,
)

__all__ = ["EXIT_ERROR", "EXIT_NOT_LOSSLESS", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    _quiet_transformers()
    signal.signal(signal.SIGTERM, _terminate)  # clean up like Ctrl-C on `kill`
    try:
        for path in args.table:
            from lemonkit.tables.data import register_file

            register_file(path)
        for plugin in args.plugin:
            load_plugin(plugin)
        args = _with_config(parser, args, argv)
        return args.func(args)
    except KeyboardInterrupt:
        return interrupted()
    except Exception as e:  # the contract: one line, exit 2 (cli/errors.py)
        if args.debug:
            raise
        return report_error(e)


def load_plugin(path: str) -> None:
    """Run a user's Python file that calls ``lemonkit.register`` (only files named
    explicitly): it executes the file. A failure in it is reported as the plugin's."""
    import importlib.util
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise LemonkitError(f"plugin {path} does not exist")
    if file.suffix != ".py":
        raise LemonkitError(
            f"plugin {path} is not a Python file (.py); a table as data (JSON or TOML) "
            "goes to --table"
        )
    spec = importlib.util.spec_from_file_location(f"lemonkit_plugin_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except LemonkitError:
        raise
    except Exception as e:
        raise LemonkitError(f"plugin {path} failed: {type(e).__name__}: {e}") from e


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="lemonkit", description="Lossless model expansion (LEMON).")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or results")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    p.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="FILE.json",
        help="a table for your own model as data (JSON or TOML, the table format); "
        "validated, runs no code",
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python file that registers tables for your own models (lemonkit.register); "
        "it EXECUTES the file: name only files you trust",
    )
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("expand", help="expand a Hugging Face folder into a new one")
    _add_paths(e, "src", "out")
    _add_targets(e)
    _add_output_options(e)
    e.set_defaults(func=cmd_expand)

    u = sub.add_parser(
        "upcycle",
        help="dense -> mixture of experts (every expert a copy of the MLP), exact; the one "
        "command that changes the class",
    )
    _add_paths(u, "src", "out")
    _add_upcycle(u)
    _add_targets(u)
    _add_output_options(u)
    u.set_defaults(func=cmd_upcycle)

    v = sub.add_parser(
        "verify",
        help="re-check an expanded folder against its source (SRC: the one lemonkit.json names)",
    )
    v.add_argument(
        "src", nargs="?", help="the source folder or Hub repo id (default: lemonkit.json's)"
    )
    v.add_argument("out")
    v.add_argument("--revision", help="SRC is a repo id: its branch, tag or commit")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    v.add_argument(
        "--blockwise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only compare whole models (--no-blockwise) or block by block (--blockwise), "
        "without the certificate's parts check",
    )
    _add_verify_options(v)
    from lemonkit.io.parallel import add_workers_option

    add_workers_option(v)
    v.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS)
    v.set_defaults(func=cmd_verify)

    pl = sub.add_parser("plan", help="dry run: what each tensor becomes, by which rule")
    _add_paths(pl, "src")
    _add_upcycle(pl)
    _add_targets(pl)
    pl.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS)
    pl.set_defaults(func=cmd_plan)

    ls = sub.add_parser("list", help="supported architectures and what each grows exactly")
    ls.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS)
    ls.set_defaults(func=cmd_list)
    return p


def _add_paths(p: argparse.ArgumentParser, *names: str) -> None:
    """SRC (a folder or a Hub repo id) and OUT, optional where a --config names them;
    --revision, --config and --save-config."""
    helps = {"src": "a folder or a Hugging Face Hub repo id (org/name)", "out": "new folder"}
    for name in names:
        p.add_argument(name, nargs="?", help=helps[name] + " (or in --config)")
    p.add_argument("--revision", help="SRC is a repo id: its branch, tag or commit")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="options from a YAML/JSON file (or a "
        "lemonkit.json, to replay its run); flags override it",
    )
    p.add_argument(
        "--save-config",
        metavar="FILE",
        help="write this run's options (YAML; JSON if FILE ends in .json)",
    )


def _with_config(parser: argparse.ArgumentParser, args, argv: list[str] | None):
    """Fold in ``--config``, check SRC/OUT are named, write ``--save-config``."""
    from lemonkit.cli import config_file

    if not hasattr(args, "save_config"):  # verify, list: no config files
        return args
    args = config_file.apply_config(parser, args, argv)
    for name in ("src", "out"):
        if hasattr(args, name) and getattr(args, name) is None:
            raise LemonkitError(
                f"{args.command} needs {name.upper()}: an argument or '{name}:' in --config"
            )
    args.run_config = config_file.run_config(args, parser)
    if args.save_config:
        config_file.save_config(args.run_config, args.save_config)
    return args


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that writes a folder (expand, upcycle)."""
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--max-shard-size", default="5GB", help="e.g. 500MB, 5GB (default 5GB)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="output dtype (default: source's)")
    p.add_argument(
        "--precision",
        choices=["float32", "float64"],
        help="arithmetic dtype (default: float64 for float64 sources, else float32)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the verification")
    _add_verify_options(p)
    from lemonkit.io.parallel import add_workers_option

    add_workers_option(p)
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS)


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    """--verify LEVEL, --max-memory SIZE (lemonkit.verification.certificate)."""
    p.add_argument(
        "--verify",
        choices=["cheap", "full"],
        default="cheap",
        help="cheap (default): float32, a few probes through every tensor, whole models "
        "when they fit --max-memory; full: float64, more probes, block by block above it",
    )
    p.add_argument(
        "--max-memory", default="1GB", help="memory budget of the verification (default 1GB)"
    )


def _add_upcycle(p: argparse.ArgumentParser) -> None:
    from lemonkit.tables.upcycle import RULES

    p.add_argument(
        "--to",
        choices=list(RULES),
        help="the MoE family: "
        + "; ".join(f"{name} (from {', '.join(r.sources)})" for name, r in RULES.items()),
    )
    p.add_argument(
        "--experts-per-token", type=int, help="top-k: experts each token runs (required)"
    )


def _add_targets(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`Targets` field and per :class:`Options` field."""
    parsers = {INT: int, INT_LIST: _int_list, INT_OR_LIST: _int_or_list, FLOAT: float}
    for f in fields(Targets):
        kind = parsers[f.metadata["kind"]]
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, help=f.metadata["help"])
    for f in fields(Options):
        flag, rows, help = "--" + f.name.replace("_", "-"), f.metadata["rows"], f.metadata["help"]
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", help=help)
        elif rows is not None:
            p.add_argument(flag, choices=list(rows), default=f.default, help=choices_help(rows))
        else:
            kind = f.metadata["type"] or type(f.default)
            p.add_argument(flag, type=kind, default=f.default, help=help)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _int_or_list(text: str) -> int | list[int]:
    """``8`` -> 8; ``3,6`` -> [3, 6] (one per stage; ``3,`` is a list of one)."""
    if "," in text:
        return _int_list(text)
    try:
        return int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from e


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # lemonkit shows its own
    except ImportError:  # pragma: no cover
        pass
