"""Each path of issue 15's list, reproduced: it now ends in the one-line contract
(``tests/contract.py``) or in a verified output, never in a traceback."""

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import lemonkit.io.folder
from contract import assert_contract, leftovers
from lemonkit.cli.main import main
from lemonkit.testing.zoo import build

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Read-only source folders (tests copy them before damaging one)."""
    root = tmp_path_factory.mktemp("sources")
    build("gpt2", dtype=torch.float32).save_pretrained(root / "gpt2")
    build("llama", dtype=torch.float32).save_pretrained(root / "llama")  # head_dim 16
    return {p.name: p for p in root.iterdir()}


@pytest.fixture
def gpt2(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved["gpt2"], tmp_path / "src"))


def test_invalid_target_config_is_refused_before_any_byte(saved, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["-q", "expand", str(saved["llama"]), str(out), "--hidden-size", "100"]
    line = assert_contract(capsys, [*argv, "--num-heads", "6"], "LlamaConfig", saved["llama"], out)
    assert "not a multiple of the number of attention heads" in line
    argv = ["plan", str(saved["llama"]), "--hidden-size", "100", "--num-heads", "6"]
    assert_contract(capsys, argv, "not valid for LlamaConfig", None, None)


def _float8(src: Path) -> None:
    tensors = load_file(src / "model.safetensors")
    tensors = {k: v.to(torch.float8_e4m3fn) if v.dim() == 2 else v for k, v in tensors.items()}
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})


def test_float8_grows_by_depth_exactly_and_is_refused_in_width(saved, tmp_path, capsys):
    src = Path(shutil.copytree(saved["llama"], tmp_path / "f8"))
    _float8(src)
    out = tmp_path / "out"
    line = assert_contract(
        capsys, ["-q", "expand", str(src), str(out), "--hidden-size", "96"], "--dtype", src, out
    )
    assert "float8_e4m3fn" in line
    assert main(["-q", "expand", str(src), str(out), "--num-layers", "4"]) == 0
    small, big = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    plan = json.loads((out / "lemonkit.json").read_text())["plan"]
    for t, s in enumerate(plan["layer_map"]):
        for part in ("mlp.up_proj.weight", "self_attn.q_proj.weight", "mlp.down_proj.weight"):
            mine, theirs = big[f"model.layers.{t}.{part}"], small[f"model.layers.{s}.{part}"]
            assert mine.dtype == torch.float8_e4m3fn
            if t not in plan["new_layers"]:  # the source's own blocks: bit for bit
                assert torch.equal(mine.view(torch.uint8), theirs.view(torch.uint8))
            elif part == "mlp.down_proj.weight":
                assert not mine.float().any()  # a new block's branch output: zeros
    wide = tmp_path / "wide"  # a wider dtype: expanded from the exact float32 upcast, verified
    argv = ["-q", "expand", str(src), str(wide), "--hidden-size", "96", "--dtype", "float32"]
    assert main(argv) == 0
    record = json.loads((wide / "lemonkit.json").read_text())
    assert record["verification"]["ok"]


def test_integer_weights_grow_by_depth_with_zeroed_branches(saved, tmp_path):
    """Quantised (int8) matrices: copies and zeros are exact in any dtype."""
    from lemonkit.testing.damage import to_dtype

    src = Path(shutil.copytree(saved["llama"], tmp_path / "i8"))
    to_dtype(src, torch.int8)
    out = tmp_path / "out"  # verification needs a model that runs: not an int8 one
    assert main(["-q", "expand", str(src), str(out), "--num-layers", "4", "--no-verify"]) == 0
    small, big = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    plan = json.loads((out / "lemonkit.json").read_text())["plan"]
    assert plan["new_layers"]
    for t, s in enumerate(plan["layer_map"]):
        for part in ("mlp.up_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight"):
            mine, theirs = big[f"model.layers.{t}.{part}"], small[f"model.layers.{s}.{part}"]
            assert mine.dtype == torch.int8 and theirs.any()
            branch = part != "mlp.up_proj.weight"  # o_proj and down_proj end a branch
            new = t in plan["new_layers"]
            assert torch.equal(mine, torch.zeros_like(theirs) if new and branch else theirs)


def test_unknown_dtype_is_named(gpt2, tmp_path, capsys):
    header = {"transformer.wte.weight": {"dtype": "C64", "shape": [4], "data_offsets": [0, 32]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (gpt2 / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(32))
    out = tmp_path / "out"
    argv = ["-q", "expand", str(gpt2), str(out), "--num-layers", "3"]
    assert "does not read" in assert_contract(capsys, argv, "has dtype C64", gpt2, out)


def test_plugin_that_is_not_python(gpt2, tmp_path, capsys):
    plugin = tmp_path / "plugin.txt"
    plugin.write_text("register(...)")
    out = tmp_path / "out"
    argv = ["--plugin", str(plugin), "expand", str(gpt2), str(out), "--num-layers", "3"]
    assert_contract(capsys, argv, "not a Python file (.py)", gpt2, out)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    argv[1] = str(broken)
    assert_contract(capsys, argv, f"plugin {broken} failed: RuntimeError: boom", gpt2, out)


def test_disk_full_while_writing(gpt2, tmp_path, capsys, monkeypatch):
    """A disk that fills during the run (the free-space check passed)."""

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(lemonkit.io.folder, "copy_other_files", full)
    out = tmp_path / "out"
    argv = ["-q", "expand", str(gpt2), str(out), "--hidden-size", "96"]
    assert_contract(capsys, argv, "no space left on the device", gpt2, out)


def test_unexpected_exceptions_ask_for_debug(gpt2, tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch in a kernel")

    monkeypatch.setattr(lemonkit.io.folder, "certify", bug)
    out = tmp_path / "out"
    argv = ["-q", "expand", str(gpt2), str(out), "--hidden-size", "96"]
    line = assert_contract(capsys, argv, "unexpected RuntimeError: shape mismatch", gpt2, out)
    assert line.endswith("re-run with --debug for the traceback")
    with pytest.raises(RuntimeError):
        main(["--debug", *argv])
    assert not out.exists() and not leftovers(tmp_path)


def test_permission_error_is_one_line(gpt2, tmp_path, capsys, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(gpt2 / "tokenizer.json"))

    monkeypatch.setattr(lemonkit.io.folder, "copy_other_files", denied)
    out = tmp_path / "out"
    argv = ["-q", "expand", str(gpt2), str(out), "--hidden-size", "96"]
    assert_contract(capsys, argv, "Permission denied: " + str(gpt2), gpt2, out)


def test_malformed_provenance(gpt2, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["-q", "expand", str(gpt2), str(out), "--num-layers", "3"]) == 0
    (out / "lemonkit.json").write_text('{"plan": ')
    assert_contract(capsys, ["-q", "verify", str(gpt2), str(out)], "not valid JSON", gpt2, None)
    (out / "lemonkit.json").write_text('{"plan": {"expected_error_fp64": "small"}}')
    assert_contract(capsys, ["-q", "verify", str(gpt2), str(out)], "not a number", gpt2, None)
    for blockwise in ("--blockwise", "--no-blockwise"):
        (out / "lemonkit.json").write_text("[1, 2]")
        argv = ["-q", "verify", str(gpt2), str(out), blockwise]
        assert_contract(capsys, argv, "not a lemonkit record", gpt2, None)


def test_usage_errors_are_one_line(gpt2, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["expand", str(gpt2), str(tmp_path / "o"), "--hidden-size", "wide"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("lemonkit: error: argument --hidden-size: invalid int value")
    assert "lemonkit expand --help" in err


def test_resnet_blockwise_and_missing_stage_tensor(tmp_path, capsys):
    from lemonkit.testing.zoo import resnet

    src = tmp_path / "resnet"
    resnet(dtype=torch.float32).save_pretrained(src)
    out = tmp_path / "out"
    assert main(["-q", "expand", str(src), str(out), "--depths", "2,3", "--no-verify"]) == 0
    argv = ["-q", "verify", str(src), str(out), "--blockwise"]
    assert_contract(capsys, argv, "grows per stage", src, None)
    assert main(["-q", "verify", str(src), str(out)]) == 0
    tensors = load_file(src / "model.safetensors")
    del tensors["resnet.encoder.stages.1.layers.1.layer.2.convolution.weight"]
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    out2 = tmp_path / "out2"
    argv = ["-q", "expand", str(src), str(out2), "--depths", "2,3", "--no-verify"]
    missing = "missing tensor 'resnet.encoder.stages.1.layers.1.layer.2."
    assert_contract(capsys, argv, missing, src, out2)


def test_user_table_without_from_pretrained_blockwise(tmp_path, capsys):
    from helpers import load_example, save_nanogpt_source

    src = tmp_path / "small"
    save_nanogpt_source(load_example("nanogpt"), src)
    out = tmp_path / "big"
    plugin = ["--plugin", str(EXAMPLES / "nanogpt.py"), "-q"]
    assert main([*plugin, "expand", str(src), str(out), "--num-layers", "3"]) == 0
    argv = [*plugin, "verify", str(src), str(out), "--blockwise"]
    assert_contract(capsys, argv, "which this user-declared model lacks", src, None)
