"""The default verification: streamed parts under a memory budget, the certificate it
records in lemonkit.json, its re-check, and --workers giving the same bytes for any N."""

import json
import threading
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from lemonkit.cli.main import main
from lemonkit.errors import LemonkitError
from lemonkit.io.folder import expand_folder
from lemonkit.io.parallel import in_order
from lemonkit.testing.zoo import build, resnet, swinv2
from lemonkit.verification.certificate import WHOLE_BYTES_PER_PARAM, certify, whole_bytes

TINY = "10KB"  # below any model here: only the streamed parts check fits


@pytest.fixture
def llama_bf16(tmp_path):
    src = tmp_path / "small"
    build("llama", dtype=torch.bfloat16, layers=2).save_pretrained(src)
    return src


def _record(out) -> dict:
    return json.loads((out / "lemonkit.json").read_text())


def test_default_check_catches_one_planted_row(llama_bf16, tmp_path):
    out = tmp_path / "big"
    grow = ["--hidden-size", "96", "--intermediate-size", "192", "--num-layers", "3"]
    assert main(["-q", "expand", str(llama_bf16), str(out), *grow, "--max-memory", TINY]) == 0
    cert = _record(out)["verification"]
    assert cert["ok"] and cert["level"] == "cheap" and cert["max_memory"] == 10_000
    assert cert["end_to_end_kind"].startswith("skipped") and cert["notes"]
    assert cert["parts"]["probed"] > 10 and cert["parts"]["dtype"] == "float32"
    p = cert["parts"]
    assert p["probed"] + p["recomputed"] + p["copied"] + p["checksummed"] == p["parts"]
    assert p["checksummed"] > 0  # the new block's untied tensors: the engine's own bytes
    assert cert["peak_rss"] > 0
    assert main(["-q", "verify", str(out), "--max-memory", TINY]) == 0  # SRC from the record
    recheck = certify(llama_bf16, out, max_memory=10_000).parts  # no checksums: recomputed
    assert recheck["checksummed"] == 0
    assert recheck["recomputed"] == p["recomputed"] + p["checksummed"]
    name = "model.layers.1.mlp.down_proj.weight"
    tensors = load_file(out / "model.safetensors")
    tensors[name][7] *= 1.05  # one wrong row of one tensor
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = certify(llama_bf16, out, max_memory=10_000)
    assert not report.ok
    assert [f["name"] for f in report.parts["failing"]] == [name]
    assert main(["-q", "verify", str(llama_bf16), str(out), "--max-memory", TINY]) == 1


def test_a_planted_row_is_caught_on_every_check_path(llama_bf16, tmp_path):
    """One wrong row in a probed tensor with a consumer axis (sub-block products), a
    probed one without (embeddings: bytewise first) and a recomputed new-block tensor
    (untying noise) is named; so is one flipped last bit where the check is bytewise
    (a probe's tolerance may let one last bit pass)."""
    out = tmp_path / "big"
    grow = dict(hidden_size=96, intermediate_size=192, num_layers=3)
    expand_folder(llama_bf16, out, max_memory=10_000, progress=False, **grow)
    clean = load_file(out / "model.safetensors")
    for name, plants in [
        ("model.layers.0.self_attn.q_proj.weight", ("row",)),
        ("lm_head.weight", ("row",)),
        ("model.embed_tokens.weight", ("row", "bit")),
        ("model.layers.2.mlp.up_proj.weight", ("row", "bit")),
    ]:
        for plant in plants:
            tensors = {n: t.clone() for n, t in clean.items()}
            if plant == "row":
                tensors[name][5] *= 1.05
            else:
                tensors[name].view(torch.int16)[5, 3] ^= 1
            save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
            report = certify(llama_bf16, out, max_memory=10_000)
            assert [f["name"] for f in report.parts["failing"]] == [name], (name, plant)
    save_file(clean, out / "model.safetensors", metadata={"format": "pt"})
    assert certify(llama_bf16, out, max_memory=10_000).ok


def test_bytes_that_differ_from_the_engines_fail_the_expand_run(llama_bf16, tmp_path, monkeypatch):
    """A checksummed tensor whose stored bytes are not the ones the engine made (one row
    changed between the engine and the disk) fails the run: nothing is published."""
    import lemonkit.io.folder as folder
    from lemonkit.verification import checksums

    name = "model.layers.2.mlp.up_proj.weight"  # a new block's untied tensor

    def corrupted(job, sums, tensor):
        for chunk in checksums.checksummed(job, sums, tensor):
            if tensor == name:
                chunk[5] *= 1.05  # after its CRC was taken: what the writer gets differs
            yield chunk

    monkeypatch.setattr(folder, "checksummed", corrupted)
    out = tmp_path / "big"
    grow = dict(hidden_size=96, intermediate_size=192, num_layers=3)
    with pytest.raises(LemonkitError, match="verification failed"):
        expand_folder(llama_bf16, out, max_memory=10_000, progress=False, **grow)
    assert not out.exists()


def test_a_wrong_norm_is_caught_by_recomputation(llama_bf16, tmp_path):
    out = tmp_path / "big"
    expand_folder(llama_bf16, out, hidden_size=96, check=False, progress=False)
    tensors = load_file(out / "model.safetensors")
    tensors["model.norm.weight"][3] += 0.5
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = certify(llama_bf16, out, max_memory=10_000)
    assert report.parts["failing"][0]["name"] == "model.norm.weight"


def test_budget_picks_the_end_to_end_check(llama_bf16, tmp_path):
    out = tmp_path / "big"
    expand_folder(llama_bf16, out, hidden_size=96, num_layers=3, check=False, progress=False)
    need = whole_bytes(llama_bf16, out)
    params = sum(
        t.numel() for f in (llama_bf16, out) for t in load_file(f / "model.safetensors").values()
    )
    assert need == WHOLE_BYTES_PER_PARAM * params
    whole = certify(llama_bf16, out, max_memory=need)
    assert whole.ok and whole.end_to_end_kind == "whole" and whole.rel_error_fp32 <= 1e-2
    skipped = certify(llama_bf16, out, max_memory=need - 1)
    assert (
        skipped.ok
        and skipped.end_to_end is None
        and skipped.rel_error_fp64 != skipped.rel_error_fp64
    )
    full = certify(llama_bf16, out, level="full", max_memory=need - 1)
    assert full.ok and full.end_to_end_kind == "blockwise" and full.parts["dtype"] == "float64"


@pytest.mark.parametrize("level", ["cheap", "full"])
def test_staged_cnn_and_swin_end_to_end(level, tmp_path):
    for name, model, grow in [
        ("resnet", resnet(), dict(hidden_sizes=[24, 56], depths=[4, 3])),
        ("swinv2", swinv2(), dict(embed_dim=32, depths=[2, 3])),
    ]:
        src, out = tmp_path / f"{name}-s", tmp_path / f"{name}-o"
        model.save_pretrained(src)
        result = expand_folder(src, out, verify=level, progress=False, **grow)
        assert result.report.ok and result.report.end_to_end_kind == "whole", (name, result.report)
        assert result.report.parts["ok"] and result.report.rel_error_fp64 <= 1e-12


def test_workers_give_the_same_bytes(tmp_path):
    src = tmp_path / "small"
    build("llama", dtype=torch.float32, layers=2).save_pretrained(src)
    grow = dict(hidden_size=96, num_layers=3, check=False, progress=False)
    blobs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}"
        expand_folder(src, out, workers=workers, max_shard_size=40_000, **grow)
        blobs.append({p.name: p.read_bytes() for p in sorted(out.glob("model*"))})
    assert len(blobs[0]) > 2 and blobs[0] == blobs[1] == blobs[2]


def test_in_order_runs_jobs_at_once_keeps_order_and_bounds_memory():
    lock, running, seen = threading.Lock(), [0], []

    def job(i):
        def run():
            with lock:
                running[0] += 1
                seen.append(running[0])
            time.sleep(0.02)
            with lock:
                running[0] -= 1
            yield torch.full((2,), float(i))

        return run

    sizes = [10, 10, 1000, 10, 10, 10]  # the third is larger than in_flight: streamed
    items = [list(x) for x in in_order([job(i) for i in range(6)], sizes, 3, in_flight=30)]
    assert [int(x[0][0]) for x in items] == list(range(6))
    assert max(seen) >= 2  # jobs overlapped
    assert max(seen) <= 4  # 3 ahead (in_flight 30 = 3 jobs) + the streamed one, in the caller


def test_in_order_frees_a_written_tensor_before_computing_past_the_budget():
    """The tensor just handed to the writer is not held while the next ones are computed
    (it counted against ``in_flight`` until handed over): memory is the budget, not the
    budget plus the largest tensor."""
    import weakref

    refs, alive = [], []

    def job(i):
        def run():
            alive.append(sum(r() is not None for r in refs))
            yield torch.full((4,), float(i))

        return run

    items = in_order([job(i) for i in range(5)], [20] * 5, 2, in_flight=30)
    while (item := next(items, None)) is not None:
        refs.append(weakref.ref(item[0]))
        item = None  # the writer drops it once queued
    assert len(refs) == 5 and alive == [0] * 5, alive


def test_depth_only_copies_are_counted_as_copies_not_probes(llama_bf16, tmp_path):
    """Every tensor of a depth-only growth but the new blocks' zeroed ones is a copy,
    compared bytewise: the certificate counts it as such, not as a probed tensor."""
    out = tmp_path / "deep"
    assert main(["-q", "expand", str(llama_bf16), str(out), "--num-layers", "3"]) == 0
    p = _record(out)["verification"]["parts"]
    assert p["copied"] > 0
    assert p["probed"] + p["recomputed"] + p["copied"] + p["checksummed"] == p["parts"]
    assert "copies compared bytewise" in (out / "README.md").read_text()


def test_the_streamed_check_gives_the_record_of_the_check_after_the_write(llama_bf16, tmp_path):
    """Shard by shard while expand writes (``StreamedCheck``), the parts record is the one
    ``check_parts`` makes of the finished folder; a shard never handed over is missing."""
    from safetensors import safe_open

    from lemonkit.io.checkpoint import Checkpoint
    from lemonkit.verification.certificate import _replan
    from lemonkit.verification.parts import LEVELS, check_parts
    from lemonkit.verification.streamed import StreamedCheck

    out = tmp_path / "big"
    grow = ["--hidden-size", "96", "--intermediate-size", "192", "--num-layers", "3"]
    args = ["-q", "expand", str(llama_bf16), str(out), *grow, "--max-shard-size", "60KB"]
    assert main([*args, "--max-memory", TINY]) == 0
    assert "while the output was written" in " ".join(_record(out)["verification"]["notes"])
    plan, decisions, source, _, _ = _replan(llama_bf16, out)
    saved = [d for d in decisions if d.saved]
    target, level = Checkpoint.open(out), LEVELS["cheap"]
    after = check_parts(source, target, plan, saved, level=level, chunk_bytes=2**20)
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 2
    for handed in (shards, shards[:-1]):
        streamed = StreamedCheck(source, plan, saved, level=level, chunk_bytes=2**20)
        for path in handed:
            with safe_open(str(path), "pt") as f:
                streamed.shard_done(path, list(f.keys()))
        record = streamed.result()
        if handed == shards:
            assert record == after and record["ok"]
        else:
            with safe_open(str(shards[-1]), "pt") as f:
                left = set(f.keys())
            assert not record["ok"]
            assert {f["name"] for f in record["failing"]} == left
            assert all(f["error"] == "missing" for f in record["failing"])


def test_the_check_thread_alone_runs_at_the_lowest_priority():
    import os

    from lemonkit.verification.streamed import LOWEST_PRIORITY, lower_priority

    seen = {}

    def probe():
        lower_priority()
        seen["thread"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, 0)
    worker = threading.Thread(target=probe)
    worker.start()
    worker.join()
    assert seen["thread"] == LOWEST_PRIORITY
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the process keeps its own


def test_an_unknown_check_level_is_refused_before_anything_is_written(llama_bf16, tmp_path):
    out = tmp_path / "big"
    with pytest.raises(ValueError, match="level must be one of"):
        expand_folder(llama_bf16, out, verify="thorough", progress=False, hidden_size=96)
    assert not out.exists() and not list(tmp_path.glob(".*big*"))
