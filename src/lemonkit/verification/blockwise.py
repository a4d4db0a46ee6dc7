"""Verification with bounded memory, one source block at a time.

A lossless expansion maps every source block to the target blocks made from it (itself
plus its new copies), each taking the expanded residual stream to the expanded stream.
So for each source block ``i`` we build two *slice models* of the same classes:

- the source's embeddings + block ``i`` + final norm + head, and
- the target's embeddings + the target blocks made from ``i`` + final norm + head,

and compare them with :func:`lemonkit.verify` (float64 and float32). The vocabulary is
sampled (``vocab_sample`` rows of the embedding and head, always including the first 8
ids, where special tokens live): rows are expanded independently, so the sample checks
them faithfully without holding a 100k x 8k embedding.

Memory: one slice model pair at a time, held in the checkpoint's dtype plus float64 and
float32 copies, i.e. about 12-16 bytes x (parameters of one source block + its target
blocks + the sampled vocabulary rows + positions/patch embeddings), independent of the
number of layers. For a 1B LLaMA (2048 -> 3072, 16 -> 24 layers) that is one 2048-wide
block and two 3072-wide blocks.

Example::

    report = verify_blockwise("small/", "big/")
    report.ok, report.blocks[0]["rel_error_fp64"]
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from lemonkit.errors import CheckpointError
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.io.files import read_provenance
from lemonkit.plan.layer_config import remap_layer_config
from lemonkit.tables import model_class
from lemonkit.tables.format import ArchTable
from lemonkit.verification.compare import VerifyReport, verify

ALWAYS_KEPT_IDS = 8


def verify_blockwise(
    src: str | Path,
    out: str | Path,
    *,
    vocab_sample: int = 512,
    seed: int = 0,
    progress: bool = False,
    tol_fp64: float = 1e-12,
    source_dtype: torch.dtype | None = None,
) -> VerifyReport:
    """Compare ``src`` and ``out`` block by block; the report holds the worst block.

    Source block i is compared with the run of target blocks from its original copy up to
    the next original (its new blocks, whichever layers they copy, are identities there).
    Where the first block is built unlike the others (``first_block_differs``), block 0
    and its run go in front of every slice.
    """
    source, target = Checkpoint.open(src), Checkpoint.open(out)
    table = source.table()
    if table.stages:
        raise CheckpointError(
            f"{table.model_types[0]} grows per stage; block-wise verification slices one "
            "stack of blocks: verify the whole models (--no-blockwise)"
        )
    layer_map = read_layer_map(Path(out))
    runs = block_runs(layer_map)
    ids = vocab_ids(source.config.vocab_size, vocab_sample, seed) if table.vocab else None
    blocks = []
    n_src = getattr(source.config, table.config.layers)
    first = first_block_differs(table)
    for i in tqdm(range(n_src), desc="verify blocks", disable=not progress):
        made_from_i = runs[i]
        prefix = ([0], runs[0]) if first and i else ([], [])
        small = slice_model(source, table, prefix[0] + [i], ids, dtype=source_dtype)
        big = slice_model(target, target.table(), prefix[1] + made_from_i, ids)  # upcycled: its own
        report = verify(small, big, seed=seed + i, tol_fp64=tol_fp64)
        blocks.append({"source_layer": i, "target_layers": made_from_i, **report.to_json()})
        del small, big
    worst = max(blocks, key=lambda b: b["rel_error_fp64"])
    return VerifyReport(
        ok=all(b["ok"] for b in blocks),
        rel_error_fp64=worst["rel_error_fp64"],
        rel_error_fp32=max(b["rel_error_fp32"] for b in blocks),
        source_fp32_error=max(b["source_fp32_error"] for b in blocks),
        tol_fp64=worst["tol_fp64"],
        tol_fp32=min(b["tol_fp32"] for b in blocks),
        max_abs_error_fp32=max(b["max_abs_error_fp32"] for b in blocks),
        blocks=blocks,
    )


def first_block_differs(table: ArchTable) -> bool:
    """Whether the class builds its first block unlike the others (ModernBERT's has no
    attention norm): then a slice of block i > 0 keeps block 0 in front, as renumbering
    block i to 0 would change its modules."""
    return any(t.absent_in for t in table.tensors)


def block_runs(layer_map: list[int]) -> list[list[int]]:
    """For each source layer, its original target layer and the new blocks after it.

    >>> block_runs([0, 1, 0, 1])
    [[0], [1, 2, 3]]
    """
    starts = [layer_map.index(i) for i in range(max(layer_map) + 1)]
    ends = [*starts[1:], len(layer_map)]
    return [list(range(a, b)) for a, b in zip(starts, ends, strict=True)]


def read_layer_map(out: Path) -> list[int]:
    """The layer map recorded in the expanded folder's ``lemonkit.json``."""
    record = read_provenance(out)
    if record is None:
        raise CheckpointError(
            f"{out} has no lemonkit.json (written by lemonkit expand); block-wise "
            "verification needs its layer map; use the full verification instead"
        )
    return record["plan"]["layer_map"]


def vocab_ids(vocab_size: int, sample: int, seed: int) -> torch.Tensor:
    """The first few ids plus a seeded random sample, sorted; all ids if few."""
    if vocab_size <= sample:
        return torch.arange(vocab_size)
    gen = torch.Generator().manual_seed(seed)
    rest = torch.randperm(vocab_size - ALWAYS_KEPT_IDS, generator=gen)[: sample - ALWAYS_KEPT_IDS]
    return torch.cat([torch.arange(ALWAYS_KEPT_IDS), rest.sort().values + ALWAYS_KEPT_IDS])


def slice_model(
    ckpt: Checkpoint,
    table: ArchTable,
    layers: list[int],
    ids: torch.Tensor | None,
    dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """Embeddings + the given layers (renumbered 0..) + head, vocabulary rows ``ids``.

    The slice is written as a small checkpoint and loaded with ``from_pretrained``, so
    whatever conversions transformers applies to saved names apply to it too.
    """
    config = copy.deepcopy(ckpt.config)
    remap_layer_config(config, table, layers, getattr(config, table.config.layers))
    setattr(config, table.config.layers, len(layers))
    if ids is not None:
        config.vocab_size = len(ids)
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            token = getattr(config, key, None)
            if isinstance(token, int) and token >= ALWAYS_KEPT_IDS:
                setattr(config, key, None)
    state = {}
    for name in ckpt:
        spec, layer = table.match(name)
        if layer is None:
            tensor = ckpt[name]
            state[name] = tensor[ids] if (ids is not None and name in table.vocab) else tensor
        elif layer in layers:
            state[spec.with_layer(name, layers.index(layer))] = ckpt[name]
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with tempfile.TemporaryDirectory(prefix="lemonkit-slice-") as folder:
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            f"{folder}/model.safetensors",
            metadata={"format": "pt"},
        )
        config.save_pretrained(folder)
        cls = model_class(config)
        return cls.from_pretrained(folder, dtype=next(iter(state.values())).dtype).eval()
