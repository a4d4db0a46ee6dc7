"""Copied tensors (depth-only growth, kept tensors) move as stored: the same bytes as the
general float path, and the parts check compares them bytewise and still catches a
planted wrong row or a flipped last bit."""

import torch
from safetensors.torch import load_file, save_file

from lemonkit.engine.copies import is_copy
from lemonkit.engine.tensor import expand_tensor
from lemonkit.io.folder import expand_folder
from lemonkit.plan.decisions import decide
from lemonkit.plan.planner import make_plan
from lemonkit.testing.zoo import build
from lemonkit.verification.certificate import certify


def _source(tmp_path):
    src = tmp_path / "small"
    build("llama", dtype=torch.bfloat16, layers=2).save_pretrained(src)
    return src


def test_copy_path_gives_the_general_paths_bytes():
    model = build("llama", dtype=torch.bfloat16, layers=2)
    sd = model.state_dict()
    infos = {n: (t.dtype, tuple(t.shape)) for n, t in sd.items()}
    for growth in ({"num_layers": 4}, {"intermediate_size": 192}):
        plan = make_plan(model.config, **growth)
        decisions = decide(plan, infos)
        copies = [d for d in decisions if is_copy(plan, d)]
        assert copies and len(copies) < len(decisions)  # norms, MLPs: the general path
        for d in copies:
            fast = expand_tensor(plan, d, sd[d.source])
            general = expand_tensor(plan, d, sd[d.source], compute_dtype=torch.float32)
            assert fast.dtype == general.dtype and torch.equal(fast.view(-1), general.view(-1))
            assert fast.data_ptr() != sd[d.source].data_ptr()  # never the source's storage


def test_parts_check_catches_a_wrong_copied_row_and_a_flipped_bit(tmp_path):
    src = _source(tmp_path)
    out = tmp_path / "deep"
    expand_folder(src, out, num_layers=4, check=False, progress=False)
    assert certify(src, out, max_memory=10_000).ok
    name = "model.layers.3.self_attn.q_proj.weight"  # a new block's copied tensor
    tensors = load_file(out / "model.safetensors")
    tensors[name][5] *= 1.05
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = certify(src, out, max_memory=10_000)
    assert [f["name"] for f in report.parts["failing"]] == [name]
    tensors[name] = load_file(src / "model.safetensors")["model.layers.1.self_attn.q_proj.weight"]
    bits = tensors[name].view(torch.int16)
    bits[2, 3] ^= 1  # one last bit of one element
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    report = certify(src, out, max_memory=10_000)
    assert [f["name"] for f in report.parts["failing"]] == [name]


def test_fixed_std_keeps_the_in_order_sums_bits():
    """The buffered fixed_std gives the very float of the two in-order float64 sums."""
    import math

    from lemonkit.engine.reductions import fixed_std, fixed_sum

    gen = torch.Generator().manual_seed(3)
    for shape, dtype in [
        ((300, 70), torch.float32),
        ((5,), torch.float64),
        ((2, 3, 4), torch.float32),
    ]:
        t = (torch.randn(shape, generator=gen, dtype=dtype) * 0.02).reshape(-1)
        t[:3] = torch.tensor([1e-30, 3.0, -7e-20], dtype=dtype)  # a wide dynamic range
        flat = t.double()
        mean = float(fixed_sum(flat, 0)) / t.numel()
        want = math.sqrt(float(fixed_sum((flat - mean) ** 2, 0)) / (t.numel() - 1))
        assert fixed_std(t.reshape(shape)) == want


def test_direct_path_gives_the_general_paths_bytes(monkeypatch):
    """Width growth's extras-only tensors (q/k/v, gate/up, embeddings, head) grown in the
    output dtype: the same bytes as the float32 path, in chunks too; a new block's untied
    ones differ at most in the last bit of random extras of replicated rows."""
    import lemonkit.engine.tensor as engine
    from lemonkit.engine.copies import is_direct
    from lemonkit.tables.format import In, space_names

    model = build("llama", dtype=torch.bfloat16, layers=2)
    sd = model.state_dict()
    infos = {n: (t.dtype, tuple(t.shape)) for n, t in sd.items()}
    plan = make_plan(model.config, hidden_size=96, intermediate_size=200, num_layers=3)
    decisions = decide(plan, infos)
    direct = [d for d in decisions if is_direct(plan, d)]
    names = {d.name.rsplit(".", 2)[-2] for d in direct}
    assert {"q_proj", "gate_proj", "embed_tokens"} <= names, names
    assert any(d.untie for d in direct)
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 1000)  # several chunks of rows
    fast = {d.name: expand_tensor(plan, d, sd[d.source]) for d in direct}
    monkeypatch.setattr(engine, "is_direct", lambda plan, d: False)
    for d in direct:
        general = expand_tensor(plan, d, sd[d.source])
        assert fast[d.name].data_ptr() != sd[d.source].data_ptr()
        differ = fast[d.name].view(torch.int16) != general.view(torch.int16)
        if not d.untie:
            assert not differ.any(), d.name
            continue
        rule = d.axes[1]
        assert isinstance(rule, In)
        src = torch.cat([plan.maps[n].channel_sources() for n in space_names(rule.space)])
        assert not (differ & (src >= 0)).any(), d.name  # only extras columns
        rounding = general.float().abs().amax(dim=1, keepdim=True) * 2.0**-7  # the row's
        assert ((fast[d.name].float() - general.float()).abs() <= rounding).all(), d.name
