"""Block-by-block verification (bounded memory) agrees with the whole-model check and
finds the block that is wrong."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from lemonkit.cli.main import main
from lemonkit.io.folder import expand_folder
from lemonkit.testing.zoo import BUILDERS, build, exact_width
from lemonkit.verification.blockwise import verify_blockwise, vocab_ids
from lemonkit.verification.folders import verify_folders


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_blockwise_float64_is_exact(arch, tmp_path):
    src = tmp_path / "small"
    build(arch, dtype=torch.float64, layers=3).save_pretrained(src)
    width = exact_width(arch)
    out = tmp_path / "big"
    expand_folder(src, out, hidden_size=width, num_layers=5, check=False, progress=False)
    report = verify_blockwise(src, out, vocab_sample=32)
    assert report.ok, report
    assert report.rel_error_fp64 <= 1e-12
    assert [b["target_layers"] for b in report.blocks] == [[0], [1, 2], [3, 4]]
    whole = verify_folders(src, out, blockwise=False)  # from_pretrained on both folders
    assert whole.ok and whole.rel_error_fp64 <= 1e-12


def test_blockwise_names_the_broken_block(tmp_path):
    src = tmp_path / "small"
    build("llama", dtype=torch.float32, layers=3).save_pretrained(src)
    out = tmp_path / "big"
    expand_folder(src, out, hidden_size=128, num_layers=6, check=False, progress=False)
    tensors = load_file(out / "model.safetensors")
    tensors["model.layers.3.mlp.down_proj.weight"] += 0.01  # a new block of source layer 1
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = verify_blockwise(src, out, vocab_sample=32)
    assert not report.ok
    assert [b["source_layer"] for b in report.blocks if not b["ok"]] == [1]
    assert main(["-q", "verify", "--blockwise", str(src), str(out)]) == 1
    assert main(["-q", "verify", str(src), str(out)]) == 1


def test_vocab_sample_keeps_special_ids():
    ids = vocab_ids(50_000, 64, seed=0)
    assert ids[:8].tolist() == list(range(8))
    assert len(ids) == 64 and len(set(ids.tolist())) == 64
    assert vocab_ids(40, 64, seed=0).tolist() == list(range(40))


def test_blockwise_with_new_blocks_away_from_their_source(tmp_path):
    """[0, 1, 0, 1]: the copy of layer 0 sits after layer 1; Post-LN moves the affine of
    layer 1's output norm into it. Each source block is checked with its run of blocks."""
    src = tmp_path / "small"
    build("bert", dtype=torch.float64).save_pretrained(src)
    out = tmp_path / "big"
    expand_folder(src, out, layer_map=[0, 1, 0, 1], check=False, progress=False)
    report = verify_blockwise(src, out, vocab_sample=32, tol_fp64=1e-11)
    assert report.ok, report
    assert [b["target_layers"] for b in report.blocks] == [[0], [1, 2, 3]]


def test_blockwise_on_a_headless_checkpoint(tmp_path):
    import transformers

    torch.manual_seed(0)
    src = tmp_path / "small"
    transformers.LlamaModel(build("llama").config).double().save_pretrained(src)
    out = tmp_path / "big"
    expand_folder(src, out, hidden_size=96, num_layers=3, check=False, progress=False)
    report = verify_blockwise(src, out, vocab_sample=32)
    assert report.ok and report.rel_error_fp64 <= 1e-12, report


def test_blockwise_keeps_modernberts_first_block_in_front(tmp_path):
    """ModernBERT's layer 0 has no attention norm: a slice renumbering block 1 to 0 would
    drop block 1's norm (both sides alike, so nothing would be checked). Slices keep
    block 0 in front instead, and a broken attention norm of block 1 is found."""
    src = tmp_path / "small"
    build("modernbert", dtype=torch.float64, layers=3).save_pretrained(src)
    out = tmp_path / "big"
    expand_folder(src, out, hidden_size=128, num_layers=5, check=False, progress=False)
    report = verify_blockwise(src, out, vocab_sample=32)
    assert report.ok and report.rel_error_fp64 <= 1e-12, report
    assert [b["target_layers"] for b in report.blocks] == [[0], [1, 2], [3, 4]]
    tensors = load_file(out / "model.safetensors")
    tensors["model.layers.1.attn_norm.weight"] *= 1.5
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = verify_blockwise(src, out, vocab_sample=32)
    assert [b["source_layer"] for b in report.blocks if not b["ok"]] == [1]
