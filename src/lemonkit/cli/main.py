"""``lemonkit`` command line: expand, upcycle, verify, plan, list.

Every lemonkit error becomes one line on stderr and a non-zero exit (2), never a
traceback; ``--quiet`` silences progress bars and results.

Example::

    lemonkit expand small/ big/ --hidden-size 768 --num-layers 12
    lemonkit upcycle llama/ moe/ --to mixtral --num-experts 8 --experts-per-token 2
    lemonkit verify small/ big/
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import fields

import torch

from lemonkit.errors import LemonkitError
from lemonkit.plan.methods import choices_help
from lemonkit.plan.targets import (
    FLOAT,
    INT,
    INT_LIST,
    INT_OR_LIST,
    OPTION_NAMES,
    TARGET_NAMES,
    Options,
    Targets,
)

EXIT_ERROR = 2
EXIT_NOT_LOSSLESS = 1
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    _quiet_transformers()
    signal.signal(signal.SIGTERM, _terminate)  # clean up like Ctrl-C on `kill`
    try:
        for plugin in args.plugin:
            load_plugin(plugin)
        return args.func(args)
    except LemonkitError as e:
        print(f"lemonkit: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lemonkit: interrupted; no output was left behind", file=sys.stderr)
        return 130


def load_plugin(path: str) -> None:
    """Run a user's file that calls ``lemonkit.register`` (only files named explicitly)."""
    import importlib.util
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise LemonkitError(f"plugin {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"lemonkit_plugin_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lemonkit", description="Lossless model expansion (LEMON).")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or results")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="a Python file that registers tables for your own models (lemonkit.register)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("expand", help="expand a Hugging Face folder into a new one")
    e.add_argument("src")
    e.add_argument("out")
    _add_targets(e)
    _add_output_options(e)
    e.set_defaults(func=cmd_expand)

    u = sub.add_parser(
        "upcycle",
        help="dense -> mixture of experts (every expert a copy of the MLP), exact; the one "
        "command that changes the class",
    )
    u.add_argument("src")
    u.add_argument("out")
    _add_upcycle(u)
    _add_targets(u)
    _add_output_options(u)
    u.set_defaults(func=cmd_upcycle)

    v = sub.add_parser(
        "verify",
        help="re-check an expanded folder against its source (SRC: the one lemonkit.json names)",
    )
    v.add_argument("src", nargs="?", help="the source folder (default: lemonkit.json's)")
    v.add_argument("out")
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
    pl.add_argument("src")
    _add_targets(pl)
    pl.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS)
    pl.set_defaults(func=cmd_plan)

    ls = sub.add_parser("list", help="supported architectures and what each grows exactly")
    ls.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS)
    ls.set_defaults(func=cmd_list)
    return p


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
        required=True,
        choices=list(RULES),
        help="the MoE family: "
        + "; ".join(f"{name} (from {', '.join(r.sources)})" for name, r in RULES.items()),
    )
    p.add_argument(
        "--experts-per-token", type=int, required=True, help="top-k: experts each token runs"
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
            p.add_argument(flag, type=type(f.default), default=f.default, help=help)


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


def _growth(args) -> dict:
    """The parsed flags of every target size and option, by keyword."""
    return {name: getattr(args, name) for name in TARGET_NAMES + OPTION_NAMES}


def cmd_expand(args, upcycle=None) -> int:
    from lemonkit.io.folder import expand_folder
    from lemonkit.io.writer import parse_size

    try:
        shard = parse_size(args.max_shard_size)
    except ValueError as e:
        raise LemonkitError(str(e)) from e
    result = expand_folder(
        args.src,
        args.out,
        force=args.force,
        max_shard_size=shard,
        dtype=DTYPES.get(args.dtype),
        compute_dtype=DTYPES.get(args.precision),
        check=not args.no_verify,
        progress=not args.quiet,
        upcycle=upcycle,
        verify=args.verify,
        max_memory=_size(args.max_memory),
        workers=args.workers,
        **_growth(args),
    )
    _say(args, f"wrote {result.out} ({', '.join(result.files)})")
    if result.plan.upcycle:
        _say(args, "  upcycled: " + _upcycled_line(result.plan.upcycle))
    _say(args, _sizes_line(result.plan))
    if result.report is not None:
        _say(args, str(result.report))
        if result.plan.lossy_reason:
            _say(args, f"  lossy by request (--allow-lossy): {result.plan.lossy_reason}")
    return 0


def cmd_upcycle(args) -> int:
    """``lemonkit upcycle SRC OUT --to mixtral --num-experts 8 --experts-per-token 2``."""
    from lemonkit.plan.upcycle import Upcycle

    if args.num_experts is None:
        raise LemonkitError("upcycle needs --num-experts (the experts of the MoE)")
    request = Upcycle(args.to, args.num_experts, args.experts_per_token, args.seed)
    return cmd_expand(args, upcycle=request)


def cmd_verify(args) -> int:
    """Re-check OUT's certificate (or, with --[no-]blockwise, only compare the models)."""
    src = args.src or _recorded_source(args.out)
    if args.blockwise is not None:
        from lemonkit.verification.folders import verify_folders

        report = verify_folders(
            src, args.out, seed=args.seed, blockwise=args.blockwise, progress=not args.quiet
        )
    else:
        from lemonkit.verification.certificate import certify

        level, budget = args.verify, _size(args.max_memory)
        from lemonkit.io.parallel import default_workers

        workers = args.workers or default_workers()
        report = certify(
            src, args.out, level=level, max_memory=budget, seed=args.seed, workers=workers
        )
    _say(args, str(report))
    return 0 if report.ok else EXIT_NOT_LOSSLESS


def _recorded_source(out: str) -> str:
    from pathlib import Path

    from lemonkit.io.files import read_provenance

    record = read_provenance(Path(out))
    if record is None:
        raise LemonkitError(f"{out} has no lemonkit.json: name the source, lemonkit verify SRC OUT")
    return record["source"]


def _size(text: str) -> int:
    from lemonkit.io.writer import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise LemonkitError(str(e)) from e


def cmd_plan(args) -> int:
    from lemonkit.cli.describe import describe_plan
    from lemonkit.io.folder import plan_folder

    _, plan, decisions = plan_folder(args.src, **_growth(args))
    _say(args, describe_plan(plan, decisions))
    return 0


def cmd_list(args) -> int:
    from lemonkit.cli.describe import describe_architectures

    _say(args, describe_architectures())
    return 0


def _upcycled_line(record: dict) -> str:
    return (
        f"{record['class']}, {record['num_experts']} experts (copies of the MLP), "
        f"{record['experts_per_token']} per token; exact because {record['exact_because']}"
    )


def _sizes_line(plan) -> str:
    from lemonkit.cli.describe import sizes_text

    return f"  {sizes_text(plan)}; method {plan.method}, depth {plan.depth}, seed {plan.seed}"


def _say(args, text: str) -> None:
    if not args.quiet:
        print(text)


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # lemonkit shows its own
    except ImportError:  # pragma: no cover
        pass
