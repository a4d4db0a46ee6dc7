"""The training harness, one run: data, the loop (resume, stop at target, DDP facts), FLOPs.

The experiment harness (configs, caching, report, torchrun, demo) is tests/test_experiment.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

from lemonkit.harness import checkpoints, loop
from lemonkit.harness.data import IGNORE, MASK_ID, TextData
from lemonkit.harness.errors import DataMissingError, HarnessError
from lemonkit.harness.models import build_model
from lemonkit.harness.sources import load_source

CONFIGS = Path(__file__).parents[1] / "experiments" / "configs"


def data_spec(config: str) -> dict:
    """The ``[data]`` table of a committed experiment config (where its data lives)."""
    return tomllib.loads((CONFIGS / f"{config}.toml").read_text())["data"]


@pytest.fixture(scope="module")
def text() -> TextData:
    return load_source(data_spec("lm_llama"))


def _cfg(**kw) -> loop.RunConfig:
    base = dict(
        steps=6,
        lr=3e-3,
        warmup=1,
        batch_size=4,
        seq_len=16,
        eval_every=2,
        eval_batches=2,
        progress=False,
    )
    return loop.RunConfig(**{**base, **kw})


def _tiny_model(seed: int = 0) -> torch.nn.Module:
    spec = {"arch": "gpt2", "hidden": 32, "layers": 1, "heads": 2}
    return build_model(spec, "causal_lm", seq_len=16, seed=seed)


# ---------------------------------------------------------------- data


def test_text_is_real_prose_split_by_file(text):
    assert len(text.train) > 5_000_000 and len(text.val) > 100_000
    assert b"Python" in bytes(text.val[:200_000].tolist())


def test_batches_are_a_function_of_seed_and_step(text):
    a = text.batch("train", 5, 4, 16, seed=1)
    b = text.batch("train", 5, 4, 16, seed=1)
    c = text.batch("train", 6, 4, 16, seed=1)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert torch.equal(a[1][:, :-1], a[0][:, 1:])


def test_mlm_masks_about_15_percent(text):
    x, y = text.mlm_batch("train", 0, 64, 64, seed=0)
    chosen = y != IGNORE
    assert 0.12 < chosen.float().mean() < 0.18
    assert (x[chosen] == MASK_ID).float().mean() > 0.7
    assert not (x[~chosen] == MASK_ID).any()


def test_missing_data_names_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("LEMONKIT_DOCS", raising=False)
    monkeypatch.delenv("LEMONKIT_FASHION_MNIST", raising=False)
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(DataMissingError, match="python3.11-doc.*make data.*LEMONKIT_DOCS"):
        load_source({**data_spec("lm_llama"), "root": nowhere})
    with pytest.raises(DataMissingError, match="dataset-fashion-mnist.*LEMONKIT_FASHION_MNIST"):
        load_source({**data_spec("vit"), "root": nowhere})
    monkeypatch.setenv("LEMONKIT_DOCS", nowhere)  # a copy that is not there either
    with pytest.raises(
        DataMissingError, match=r"nowhere \(from \$LEMONKIT_DOCS\) not found: point"
    ):
        load_source(data_spec("lm_llama"))


def test_text_files_in_sorted_path_order_split_by_file(tmp_path, monkeypatch):
    for name in ("b.txt", "a/z.txt", "a/y.txt", "c.txt", "skip.rst"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    spec = {"kind": "text_files", "root": "/not/here", "env": "MY_DOCS", "val_every": 2}
    monkeypatch.setenv("MY_DOCS", str(tmp_path))  # set: replaces root
    data = load_source(spec)
    assert bytes(data.val.tolist()) == b"a/y.txt\n\nb.txt\n\n"  # files 0 and 2
    assert bytes(data.train.tolist()) == b"a/z.txt\n\nc.txt\n\n"
    with pytest.raises(HarnessError, match="matches '\\*\\.md'"):
        load_source({**spec, "glob": "*.md"})


def test_unknown_data_kinds_and_keys_are_refused():
    known = "idx_images, image_folder, text_file, text_files"
    with pytest.raises(HarnessError, match=f"unknown kind 'parquet'.*{known}"):
        load_source({"kind": "parquet", "root": "/"})
    with pytest.raises(HarnessError, match=r"unknown keys \['val_evry'\]"):
        load_source({**data_spec("lm_llama"), "val_evry": 10})


def test_fashion_mnist_loads():
    d = load_source({**data_spec("vit"), "val_size": 100})
    assert d.train_x.shape == (60000, 1, 28, 28) and d.val_x.shape == (100, 1, 28, 28)
    assert set(d.train_y.unique().tolist()) == set(range(10))


# ---------------------------------------------------------------- loop


def test_training_lowers_validation_loss(text):
    hist = loop.train(_tiny_model(), "causal_lm", text, _cfg(steps=30, eval_every=30)).history
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.3
    assert hist[-1]["flops"] > 0


def test_resume_repeats_the_uninterrupted_run_exactly(text, tmp_path, monkeypatch):
    full = _tiny_model()
    ref = loop.train(full, "causal_lm", text, _cfg()).history

    real = loop.get_batch

    def crash_at_step_4(task, data, split, step, cfg, seed):
        if split == "train" and step == 4:
            raise KeyboardInterrupt
        return real(task, data, split, step, cfg, seed)

    monkeypatch.setattr(loop, "get_batch", crash_at_step_4)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        loop.train(_tiny_model(), "causal_lm", text, _cfg(ckpt_every=2), ckpt_dir=ckpt)
    assert json.loads((ckpt / "progress.json").read_text())["step"] == 4
    monkeypatch.setattr(loop, "get_batch", real)
    resumed = _tiny_model(seed=123)  # different init: everything must come from the checkpoint
    hist = loop.train(resumed, "causal_lm", text, _cfg(ckpt_every=2), ckpt_dir=ckpt).history
    assert [h["step"] for h in hist] == [h["step"] for h in ref]
    assert [h["val_loss"] for h in hist] == pytest.approx([h["val_loss"] for h in ref], abs=1e-6)
    for (n, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=n)


def test_resume_refuses_other_settings_and_finds_an_interrupted_save(text, tmp_path):
    ckpt = tmp_path / "ckpt"
    loop.train(_tiny_model(), "causal_lm", text, _cfg(steps=2, ckpt_every=2), ckpt_dir=ckpt)
    with pytest.raises(ValueError, match="other settings"):
        loop.train(_tiny_model(), "causal_lm", text, _cfg(steps=2, lr=1e-2), ckpt_dir=ckpt)
    ckpt.rename(tmp_path / "ckpt.old")  # a save cut off between its two renames
    assert checkpoints.find_checkpoint(ckpt) == tmp_path / "ckpt.old"
    res = loop.train(_tiny_model(), "causal_lm", text, _cfg(steps=2), ckpt_dir=ckpt)
    assert [h["step"] for h in res.history] == [0, 2]  # resumed at 2: nothing trained again


def test_step_facts_alone_weight_one_and_flag_a_nan():
    labels = torch.tensor([[1, IGNORE]])
    assert loop.step_facts(torch.tensor(2.0), labels, 1) == (1.0, True)
    assert loop.step_facts(torch.tensor(float("inf")), labels, 1) == (1.0, False)


def test_stop_at_target(text):
    cfg = _cfg(steps=40, eval_every=2, target=100.0, stop_at_target=True)
    res = loop.train(_tiny_model(), "causal_lm", text, cfg)
    assert res.stopped_early and res.history[-1]["step"] == 2


def test_ki_run_counts_teacher_flops(text):
    plain = loop.train(_tiny_model(), "causal_lm", text, _cfg(steps=2))
    ki = loop.train(
        _tiny_model(), "causal_lm", text, _cfg(steps=2, ki="hard"), teacher=_tiny_model(seed=5)
    )
    assert ki.flops_per_step == pytest.approx(plain.flops_per_step * 4 / 3)


def test_flops_count_a_tied_head_once():
    from lemonkit.harness.models import matmul_params, non_embedding_params

    gpt2 = _tiny_model()  # head tied to wte
    assert matmul_params(gpt2) == non_embedding_params(gpt2) + 258 * 32
    llama = build_model(
        {"arch": "llama", "hidden": 32, "layers": 1, "heads": 4, "intermediate": 64},
        "causal_lm",
        seq_len=16,
    )  # untied: lm_head is already a non-embedding parameter
    assert matmul_params(llama) == non_embedding_params(llama)


def _tiny_bert() -> torch.nn.Module:
    spec = {"arch": "bert", "hidden": 32, "layers": 2, "heads": 4, "vocab": 300}
    return build_model(spec, "mlm", seq_len=16).double()


def test_labelled_head_is_the_full_models_masked_lm_loss(text):
    """The head on the labelled positions only: the same loss, gradients and KI loss as
    the stock model's full logits (float64), and only those positions' logits."""
    import lemonkit

    x, y = text.mlm_batch("train", 3, 4, 16, seed=0)
    x = x.clamp(max=299)
    full_model, teacher = _tiny_bert(), _tiny_bert()
    kept_model = _tiny_bert()
    kept_model.load_state_dict(full_model.state_dict())
    full = full_model(input_ids=x).logits  # (B, T, V)
    logits, labels = loop.LabelledHead(kept_model)(x, y)
    assert logits.shape == (int((y != IGNORE).sum()), 300)
    assert torch.allclose(logits, full[y != IGNORE], rtol=1e-12, atol=1e-12)
    loop.cross_entropy(full, y).backward()
    loop.cross_entropy(logits, labels).backward()
    for (name, a), b in zip(full_model.named_parameters(), kept_model.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14), name
    t_full = teacher(input_ids=x).logits
    t_kept, _ = loop.LabelledHead(teacher)(x, y)
    for mode in ("soft", "hard"):
        want = lemonkit.ki_loss(full, t_full, y, 0.3, mode=mode)
        assert lemonkit.ki_loss(logits, t_kept, labels, 0.3, mode=mode).item() == pytest.approx(
            want.item(), rel=1e-12
        )


def test_masked_lm_flops_count_the_head_on_the_labelled_share_only(text):
    from lemonkit.harness.models import head_params, matmul_params

    bert, cfg = _tiny_bert().float(), _cfg(steps=2, mask_prob=0.15)
    res = loop.train(bert, "mlm", _BertVocab(text), cfg)
    tokens, attention = 4 * 16, 12.0 * 2 * 16 * 32 * 4 * 16
    body = matmul_params(bert) - head_params(bert)
    want = 6.0 * (body + 0.15 * head_params(bert)) * tokens + attention
    assert head_params(bert) == 32 * 32 + 32 * 300 and res.flops_per_step == pytest.approx(want)
    assert loop.evaluate(bert, "mlm", _BertVocab(text), cfg, "cpu")["val_loss"] < 10


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_a_masked_lm_trains_under_ki(text, mode):
    """The teacher sees the batch's labels, not the student's kept ones (an IndexError in
    the first real BERT run with KI once the head ran on the labelled positions)."""
    cfg = _cfg(steps=2, mask_prob=0.15, ki=mode)
    student, teacher = _tiny_bert().float(), _tiny_bert().float()
    res = loop.train(student, "mlm", _BertVocab(text), cfg, teacher=teacher)
    assert [h["step"] for h in res.history] == [0, 2]
    assert 0 < res.history[-1]["val_loss"] < 10


class _BertVocab:
    """The docs' bytes as ids < 300 (the tiny BERT's vocabulary)."""

    def __init__(self, text: TextData):
        self.text = text

    def mlm_batch(self, *args, **kw):
        x, y = self.text.mlm_batch(*args, **kw)
        return x.clamp(max=299), y
