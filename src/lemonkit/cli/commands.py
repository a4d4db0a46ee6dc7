"""What each ``lemonkit`` subcommand does with its parsed arguments (the parser and the
failure contract live in :mod:`lemonkit.cli.main`).

Example::

    from lemonkit.cli.main import build_parser
    args = build_parser().parse_args(["list"])
    cmd_list(args)   # prints every architecture's table summary
"""

from __future__ import annotations

import torch

from lemonkit.cli.errors import EXIT_NOT_LOSSLESS
from lemonkit.errors import LemonkitError
from lemonkit.plan.targets import OPTION_NAMES, TARGET_NAMES

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def _growth(args) -> dict:
    """The parsed flags of every target size and option, by keyword."""
    return {name: getattr(args, name) for name in TARGET_NAMES + OPTION_NAMES}


def cmd_expand(args, upcycle=None) -> int:
    from lemonkit.io.folder import expand_folder

    result = expand_folder(
        args.src,
        args.out,
        force=args.force,
        max_shard_size=_size(args.max_shard_size),
        dtype=DTYPES.get(args.dtype),
        compute_dtype=DTYPES.get(args.precision),
        check=not args.no_verify,
        progress=not args.quiet,
        upcycle=upcycle,
        revision=args.revision,
        run_config=args.run_config,
        verify=args.verify,
        max_memory=_size(args.max_memory),
        workers=args.workers,
        **_growth(args),
    )
    _say(args, f"wrote {result.out} ({', '.join(result.files)})")
    if result.plan.upcycle:
        from lemonkit.cli.describe import upcycled_text

        _say(args, "  upcycled: " + upcycled_text(result.plan.upcycle))
    _say(args, _sizes_line(result.plan))
    if result.report is not None:
        _say(args, str(result.report))
        if result.plan.lossy_reason:
            _say(args, f"  lossy by request (--allow-lossy): {result.plan.lossy_reason}")
    return 0


def cmd_upcycle(args) -> int:
    """``lemonkit upcycle SRC OUT --to mixtral --num-experts 8 --experts-per-token 2``."""
    return cmd_expand(args, upcycle=_upcycle_request(args, "upcycle"))


def _upcycle_request(args, command: str):
    """The ``Upcycle`` that ``--to``, ``--num-experts`` and ``--experts-per-token`` ask
    for; ``plan`` without ``--to`` plans a plain expansion (None)."""
    from lemonkit.plan.upcycle import Upcycle

    if command == "plan" and args.to is None and args.experts_per_token is None:
        return None
    if args.to is None or args.experts_per_token is None:
        raise LemonkitError(f"{command} needs --to (the MoE family) and --experts-per-token")
    if args.num_experts is None:
        raise LemonkitError(f"{command} needs --num-experts (the experts of the MoE)")
    return Upcycle(args.to, args.num_experts, args.experts_per_token, args.seed)


def cmd_verify(args) -> int:
    """Re-check OUT's certificate (or, with --[no-]blockwise, only compare the models)."""
    from lemonkit.io.hub import resolve_source

    src = args.src or _recorded_source(args.out)
    src = resolve_source(src, args.revision).path
    if args.blockwise is not None:
        from lemonkit.verification.folders import verify_folders

        report = verify_folders(
            src, args.out, seed=args.seed, blockwise=args.blockwise, progress=not args.quiet
        )
    else:
        from lemonkit.io.parallel import default_workers
        from lemonkit.verification.certificate import certify

        report = certify(
            src,
            args.out,
            level=args.verify,
            max_memory=_size(args.max_memory),
            seed=args.seed,
            workers=args.workers or default_workers(),
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

    upcycle = _upcycle_request(args, "plan")
    growth = _growth(args)
    _, plan, decisions = plan_folder(args.src, revision=args.revision, upcycle=upcycle, **growth)
    _say(args, describe_plan(plan, decisions))
    return 0


def cmd_list(args) -> int:
    from lemonkit.cli.describe import describe_architectures

    _say(args, describe_architectures())
    return 0


def _sizes_line(plan) -> str:
    from lemonkit.cli.describe import sizes_text

    return f"  {sizes_text(plan)}; method {plan.method}, depth {plan.depth}, seed {plan.seed}"


def _say(args, text: str) -> None:
    if not args.quiet:
        print(text)
