"""The verification users get by default: streamed parts under a memory budget, the whole
models end to end when they fit it, and a certificate of what was checked.

``certify`` runs two checks and records both in ``lemonkit.json`` (``verification``):

1. **parts** (:mod:`lemonkit.verification.parts`): every stored tensor, in chunks of
   rows, sampled inputs through its source and target part. Memory: one chunk, whatever
   the block size. Always run.
2. **end to end**: source and target models on random tokens (:func:`lemonkit.verify`)
   when both fit the budget (about 16 bytes per parameter of the pair: the models plus
   their float64 and float32 copies). Above it, ``level="full"`` runs it block by block
   (one source block and its target blocks at a time, which can exceed the budget for
   very large blocks); ``cheap`` records it as skipped and why.

Levels: ``cheap`` (default: float32, 4 probes per part, every tensor of every block and
sub-layer) and ``full`` (float64, 16 probes).

Example::

    cert = certify("small/", "big/")            # re-check an output folder
    cert.ok, cert.to_json()["parts"]["worst"]
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lemonkit.errors import CheckpointError, LemonkitError
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.io.files import read_provenance
from lemonkit.plan import ExpansionPlan, make_plan
from lemonkit.plan.decisions import Decision, decide
from lemonkit.verification.compare import VerifyReport
from lemonkit.verification.folders import recorded_tolerance
from lemonkit.verification.parts import LEVELS, check_parts
from lemonkit.verification.streamed import StreamedCheck

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMORY = 10**9
WHOLE_BYTES_PER_PARAM = 16  # the models, their float64 and float32 copies
CERTIFICATE_FORMAT = 1


@dataclass
class Certificate:
    """What was checked and how: the parts, the end-to-end comparison, the budget."""

    ok: bool
    level: str
    max_memory: int
    parts: dict | None
    end_to_end: VerifyReport | None
    end_to_end_kind: str  # "whole", "blockwise" or "skipped: why"
    out_dtype: str | None = None
    peak_rss: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __getattr__(self, name: str):
        """The end-to-end report's errors (``rel_error_fp64``...), NaN when skipped."""
        if name.startswith("__") or name == "end_to_end":
            raise AttributeError(name)
        if self.end_to_end is not None and hasattr(self.end_to_end, name):
            return getattr(self.end_to_end, name)
        if name in VerifyReport.__dataclass_fields__:
            return math.nan
        raise AttributeError(name)

    def to_json(self) -> dict:
        e2e = self.end_to_end.to_json() if self.end_to_end else None
        return {
            "format": CERTIFICATE_FORMAT,
            "ok": self.ok,
            "level": self.level,
            "max_memory": self.max_memory,
            "out_dtype": self.out_dtype,
            "parts": self.parts,
            "end_to_end_kind": self.end_to_end_kind,
            "end_to_end": e2e,
            "peak_rss": self.peak_rss,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            # the end-to-end errors at the top level, as before the certificate
            **({k: v for k, v in e2e.items() if k != "ok"} if e2e else {}),
        }

    def __str__(self) -> str:
        verdict = "LOSSLESS" if self.ok else "NOT LOSSLESS"
        lines = [f"{verdict} (verify {self.level}, budget {self.max_memory / 1e9:.2g} GB)"]
        if self.parts is not None:
            p, w = self.parts, self.parts["worst"]
            lines.append(
                f"  parts: {p['parts']} tensors ({p['probed']} on {p['probes_per_part']} "
                f"{p['dtype']} probes, {p['recomputed']} recomputed, "
                f"{p.get('copied', 0)} copies compared bytewise, "
                f"{p.get('checksummed', 0)} against the engine's CRC-32)"
                + (f"; worst {w['name']} {w['error']:.1e} (tol {w['tolerance']:.0e})" if w else "")
            )
            for f in p["failing"]:
                lines.append(f"  FAILING part {f['name']}: {f.get('error')}")
        if self.end_to_end is not None:
            body = str(self.end_to_end).split("\n", 1)[1] if "\n" in str(self.end_to_end) else ""
            lines.append(f"  end to end ({self.end_to_end_kind}):\n{body}")
        else:
            lines.append(f"  end to end: {self.end_to_end_kind}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  peak RSS {self.peak_rss / 1e6:.0f} MB")
        return "\n".join(lines)


def certify(
    src: str | Path,
    out: str | Path,
    *,
    plan: ExpansionPlan | None = None,
    decisions: list[Decision] | None = None,
    source: Checkpoint | None = None,
    level: str = "cheap",
    max_memory: int = DEFAULT_MAX_MEMORY,
    out_dtype: torch.dtype | None = None,
    seed: int = 0,
    progress: bool = False,
    workers: int = 1,
    checksums: dict[str, int] | None = None,
    parts: dict | None = None,
) -> Certificate:
    """Check ``out`` against ``src``; ``plan``/``decisions``/``source`` as expand made
    them (else re-made from ``out``'s ``lemonkit.json``). ``out_dtype``: ``--dtype``.
    ``workers``: tensors checked at once (the budget is shared). ``checksums``: the
    expand run's CRC-32 of the tensors the engine alone can check
    (:mod:`~lemonkit.verification.checksums`). ``parts``: the parts record, already made
    while the output was written (:func:`streamed_check`)."""
    _check_level(level)
    start = time.perf_counter()
    src, out = Path(src), Path(out)
    target = Checkpoint.open(out)
    notes: list[str] = []
    if plan is None:
        plan, decisions, source, out_dtype, why = _replan(src, out)
        if why:
            notes.append(why)
    if parts is not None:
        notes.append("parts checked shard by shard while the output was written")
    if parts is None and plan is not None:
        saved = [d for d in decisions if d.saved]
        parts = check_parts(
            source, target, plan, saved, level=LEVELS[level], chunk_bytes=parts_chunk(max_memory),
            seed=seed, progress=progress, workers=workers, checksums=checksums,
        )  # fmt: skip
    tol = plan.expected_error if plan is not None else recorded_tolerance(out)
    report, kind = _end_to_end(src, out, level, max_memory, tol, out_dtype, seed, progress)
    ok = (parts is None or parts["ok"]) and (report is None or report.ok)
    if parts is None and report is None:
        ok = False
        notes.append("nothing was checked: raise --max-memory or use --verify full")
    if parts is not None and report is None:
        notes.append(
            "the parts check compares each stored tensor with its source through the plan's "
            "lift; how parts compose (config, norms, attention) is checked end to end only"
        )
    return Certificate(
        ok=ok,
        level=level,
        max_memory=max_memory,
        parts=parts,
        end_to_end=report,
        end_to_end_kind=kind,
        out_dtype=str(out_dtype).removeprefix("torch.") if out_dtype else None,
        peak_rss=peak_rss(),
        seconds=time.perf_counter() - start,
        notes=notes,
    )


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")


def parts_chunk(max_memory: int) -> int:
    """Bytes of rows the parts check reads at a time, all its threads together."""
    return max(2**20, min(64 * 2**20, max_memory // 32))


def streamed_check(
    source: Checkpoint,
    plan: ExpansionPlan,
    decisions: list[Decision],
    level: str,
    max_memory: int,
    checksums: dict[str, int] | None,
) -> StreamedCheck | None:
    """The parts check that ``expand`` runs while it writes (None: ``checksums`` is None,
    no check follows); ``decisions``: the saved ones, in write order."""
    if checksums is None:
        return None
    _check_level(level)
    return StreamedCheck(
        source, plan, decisions, level=LEVELS[level], chunk_bytes=parts_chunk(max_memory),
        checksums=checksums,
    )  # fmt: skip


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def whole_bytes(src: Path, out: Path) -> int:
    """What the end-to-end comparison of the two whole models needs, about."""
    params = 0
    for folder in (src, out):
        for _, shape in Checkpoint.open(folder).infos().values():
            params += math.prod(shape)
    return WHOLE_BYTES_PER_PARAM * params


def _end_to_end(src, out, level, max_memory, tol, out_dtype, seed, progress):
    from lemonkit.verification.folders import verify_folders

    need = whole_bytes(src, out)
    if need <= max_memory:
        report = verify_folders(
            src, out, blockwise=False, tol_fp64=tol, source_dtype=out_dtype, seed=seed
        )
        return report, "whole"
    if level == "full" and not Checkpoint.open(src).table().stages:
        report = verify_folders(
            src, out, blockwise=True, tol_fp64=tol, source_dtype=out_dtype, seed=seed,
            progress=progress,
        )  # fmt: skip
        return report, "blockwise"
    return None, (
        f"skipped: the whole models need about {need / 1e9:.1f} GB, over the "
        f"{max_memory / 1e9:.2g} GB budget (--max-memory)"
        + ("" if level == "full" else "; --verify full compares them block by block")
    )


def _replan(src: Path, out: Path):
    """Plan and decisions re-made from the sizes and options ``lemonkit.json`` records."""
    record = read_provenance(out)
    if record is None:
        raise CheckpointError(
            f"{out} has no lemonkit.json (written by lemonkit expand): nothing to re-check; "
            "compare whole models with lemonkit verify --no-blockwise SRC OUT"
        )
    recorded_tolerance(out)  # a malformed record is one line, before any work
    p = record["plan"]
    for key in ("target_sizes", "options"):
        if not isinstance(p.get(key), dict):
            raise CheckpointError(
                f"{out}/lemonkit.json: plan.{key} is missing or not a mapping; was it edited?"
            )
    if p.get("upcycle"):
        return None, None, None, None, "upcycled output: parts are checked only by expand"
    source = Checkpoint.open(src)
    growth = {**p["target_sizes"], **p["options"]}
    name = (record.get("verification") or {}).get("out_dtype")
    dtype = getattr(torch, name) if name else None
    try:
        plan = make_plan(source.config, base_model=source.is_headless(), **growth)
        decisions = decide(plan, source.infos(), out_dtype=dtype, for_checkpoint=True)
    except LemonkitError as e:  # not the source the record names: compare outputs only
        why = f"the plan lemonkit.json records does not apply to {src} ({e}); parts not checked"
        return None, None, None, dtype, why
    recorded = p.get("source_sizes")
    if recorded is not None and plan.source.given() != recorded:
        # the plan applies, but to another model than the one grown (e.g. the source of a
        # source): the stored tensors were not made from it, only the outputs compare
        why = (
            f"{src} is not the source lemonkit.json records (sizes {plan.source.given()}, "
            f"recorded {recorded}); parts not checked"
        )
        return None, None, None, dtype, why
    return plan, decisions, source, dtype, None
