"""CRC-32 of the bytes the engine produced, compared with the bytes read back from disk.

The parts check verifies most tensors against their source through the plan's lift
(probes), independently of the engine. A new block's untied tensors (the fan-in of its
replicated units, with their own noise: ``Decision.untie``) it can only compare with the
engine's own output, and recomputing that output costs as much as making it: mostly
random draws, half the check on a 1B LLaMA grown in width and depth. They are free
parameters: the block's last linear is zero, so their values cannot reach the output.
In the expand run the engine's output is at hand: each such tensor's CRC-32 is taken as
its chunks are made (in the worker that makes them), and the check compares it with the
CRC-32 of the stored bytes. That proves that the bytes on disk are the engine's, at the
cost of reading them; unlike recomputing, it cannot see an engine that gives other bytes
on another run (a race between workers), which for these tensors cannot change the
function. Every other tensor the check cannot probe (norms, donors, split experts: they
do reach the output) is still recomputed, and ``lemonkit verify OUT`` (a later re-check,
no checksums at hand) recomputes these too.

Example::

    sums = {}
    chunks = checksummed(job, sums, "model.layers.3.mlp.up_proj.weight")  # as written
    ...
    stored_crc(target, name, shape, rows_per_chunk) == sums[name]
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator

import torch

from lemonkit.verification.chunks import rows_of


def checksum_kind(plan, d) -> bool:
    """Whether ``d``'s check is by checksum in the expand run: a new block's untied tensor
    (free parameters behind a zeroed output, recomputed otherwise)."""
    return bool(d.untie) and d.op == "expand"


def crc_update(crc: int, chunk: torch.Tensor) -> int:
    """``crc`` extended by the chunk's bytes as the writer stores them (row-major)."""
    flat = chunk.contiguous().reshape(-1)
    return zlib.crc32(flat.view(torch.uint8).numpy(), crc)  # zlib drops the GIL


def checksummed(
    job: Callable[[], Iterable[torch.Tensor]], sums: dict[str, int], name: str
) -> Iterator[torch.Tensor]:
    """The job's chunks unchanged; once they are all made, ``sums[name]`` is their CRC."""
    crc = 0
    for chunk in job():
        crc = crc_update(crc, chunk)
        yield chunk
    sums[name] = crc


def stored_crc(target, name: str, shape: tuple[int, ...], per: int) -> int:
    """CRC-32 of a stored tensor's bytes, read ``per`` rows at a time."""
    if not shape:
        return crc_update(0, target[name])
    crc = 0
    for start in range(0, shape[0], per):
        crc = crc_update(crc, rows_of(target, name, start, min(start + per, shape[0])))
    return crc
