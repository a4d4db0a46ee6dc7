"""Non-finite source weights are named before anything is written: the background scan
gives the answer the direct check gives, for the tensors the plan reads only."""

import pytest
import torch
from safetensors.torch import save_file

from lemonkit.errors import CheckpointError
from lemonkit.io import finite
from lemonkit.io.finite import FiniteScan, check_finite, non_finite


def _files(tmp_path, tensors: dict[str, torch.Tensor]) -> list:
    """Two shards, the tensors split between them."""
    names = list(tensors)
    half = len(names) // 2
    paths = []
    for i, part in enumerate((names[:half], names[half:])):
        path = tmp_path / f"model-{i}.safetensors"
        save_file({n: tensors[n] for n in part}, str(path))
        paths.append(path)
    return paths


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "a": torch.randn(64, 8, dtype=torch.bfloat16),
        "b": torch.randn(40, 8),
        "scalar": torch.tensor(1.5),
        "f8": torch.randn(16, 4).to(torch.float8_e5m2),
        "ids": torch.arange(10),
        "c": torch.randn(33, dtype=torch.float16),
    }


@pytest.mark.parametrize("name,where", [("a", (50, 3)), ("b", (0, 0)), ("scalar", ()),
                                        ("f8", (15, 3)), ("c", (32,))])  # fmt: skip
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_the_scan_names_what_check_finite_names(tmp_path, monkeypatch, name, where, value):
    monkeypatch.setattr(finite, "FINITE_CHUNK", 16)  # several chunks of rows per tensor
    tensors = _tensors()
    tensors[name][where] = value
    scan = FiniteScan(_files(tmp_path, tensors))
    with pytest.raises(CheckpointError, match=f"source tensor '{name}' holds 1 non-finite"):
        scan.check(list(tensors), fallback=tensors)
    with pytest.raises(CheckpointError, match=f"source tensor '{name}' holds 1 non-finite"):
        check_finite(tensors, list(tensors))


def test_a_tensor_the_plan_does_not_read_is_not_named(tmp_path):
    tensors = _tensors()
    tensors["b"][3, 3] = float("nan")
    scan = FiniteScan(_files(tmp_path, tensors))
    scan.check(["a", "scalar", "c"], fallback=tensors)  # no error: "b" is not read
    with pytest.raises(CheckpointError, match="'b'"):
        scan.check(["a", "b"], fallback=tensors)


def test_a_scan_that_could_not_run_reads_the_fallback(tmp_path):
    """Unlisted files (the plan reports why) or a stopped scan: the direct check runs."""
    tensors = _tensors()
    tensors["a"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="'a'"):
        FiniteScan(None).check(["a"], fallback=tensors)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="'a'"):
        FiniteScan([broken]).check(["a"], fallback=tensors)
    scan = FiniteScan(_files(tmp_path, _tensors()))
    scan.stop()
    with pytest.raises(CheckpointError, match="'a'"):
        scan.check(["a"], fallback=tensors)  # stopped: the fallback's NaN is found


def test_non_finite_counts():
    t = torch.tensor([1.0, float("nan"), float("inf"), -2.0])
    assert non_finite(t) == 2 and non_finite(t[[0, 3]]) == 0
    assert non_finite(torch.empty(0)) == 0
