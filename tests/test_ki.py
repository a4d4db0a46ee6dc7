"""Knowledge inheritance (paper A.3): the alpha schedule and the soft/hard KI losses."""

import pytest
import torch
import torch.nn.functional as F

from lemonkit import ki_alpha, ki_loss


def _logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_alpha_schedule():
    assert [ki_alpha(s, 10) for s in (0, 5, 10, 11, 1000)] == pytest.approx([0.5, 0.25, 0, 0, 0])
    assert ki_alpha(3, 4, start=0.8) == pytest.approx(0.2)
    assert ki_alpha(0, 0) == 0.0
    with pytest.raises(ValueError, match="start"):
        ki_alpha(0, 10, start=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        ki_alpha(-1, 10)


@pytest.mark.parametrize("shape", [(3, 5, 11), (4, 11)])
def test_alpha_zero_is_cross_entropy(shape):
    s, t = _logits(*shape), _logits(*shape, seed=1)
    labels = torch.randint(0, shape[-1], shape[:-1])
    ce = F.cross_entropy(s.reshape(-1, shape[-1]), labels.reshape(-1))
    for mode in ("soft", "hard"):
        assert ki_loss(s, t, labels, alpha=0.0, mode=mode) == pytest.approx(ce.item(), rel=1e-6)


def test_soft_kl_is_teacher_first_and_zero_on_itself():
    s, t = _logits(2, 6, 9), _logits(2, 6, 9, seed=1)
    labels = torch.randint(0, 9, (2, 6))
    ce = F.cross_entropy(s.reshape(-1, 9), labels.reshape(-1))
    # student == teacher: the KL term vanishes, only (1 - alpha) * CE is left
    assert ki_loss(s, s, labels, alpha=1.0) == pytest.approx(0.0, abs=1e-6)
    assert ki_loss(s, s.clone(), labels, alpha=0.3) == pytest.approx(0.7 * ce.item(), rel=1e-6)
    # KL(p_teacher || p_student), mean over positions
    p_t = t.softmax(-1)
    kl = (p_t * (t.log_softmax(-1) - s.log_softmax(-1))).sum(-1).mean()
    assert ki_loss(s, t, labels, alpha=1.0) == pytest.approx(kl.item(), rel=1e-5)
    reverse = (s.softmax(-1) * (s.log_softmax(-1) - t.log_softmax(-1))).sum(-1).mean()
    assert abs(kl.item() - reverse.item()) > 1e-3  # the two directions do differ here


def test_hard_is_cross_entropy_on_teacher_argmax():
    s, t = _logits(2, 6, 9), _logits(2, 6, 9, seed=1)
    labels = torch.randint(0, 9, (2, 6))
    hard_ce = F.cross_entropy(s.reshape(-1, 9), t.argmax(-1).reshape(-1))
    assert ki_loss(s, t, labels, alpha=1.0, mode="hard") == pytest.approx(hard_ce.item(), rel=1e-6)
    ce = F.cross_entropy(s.reshape(-1, 9), labels.reshape(-1))
    mixed = ki_loss(s, t, labels, alpha=0.25, mode="hard")
    assert mixed == pytest.approx(0.75 * ce.item() + 0.25 * hard_ce.item(), rel=1e-6)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_ignored_positions_are_excluded(mode):
    s, t = _logits(2, 6, 9), _logits(2, 6, 9, seed=1)
    labels = torch.randint(0, 9, (2, 6))
    labels[0, :4] = -100
    keep = labels != -100
    full = ki_loss(s, t, labels, alpha=0.5, mode=mode)
    # only the kept positions matter: changing the ignored ones changes nothing
    s2, t2 = s.clone(), t.clone()
    s2[~keep] = 100.0 * _logits(int((~keep).sum()), 9, seed=2)
    t2[~keep] = -s2[~keep]
    assert ki_loss(s2, t2, labels, alpha=0.5, mode=mode) == pytest.approx(full.item(), rel=1e-6)
    # and it equals the loss on the kept positions alone
    kept = ki_loss(s[keep], t[keep], labels[keep], alpha=0.5, mode=mode)
    assert full == pytest.approx(kept.item(), rel=1e-6)
    # another ignore_index works the same way; all ignored gives 0, not NaN
    assert ki_loss(
        s, t, labels.masked_fill(~keep, -1), 0.5, mode, ignore_index=-1
    ) == pytest.approx(full.item(), rel=1e-6)
    assert ki_loss(s, t, torch.full_like(labels, -100), 0.5, mode).item() == 0.0


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_gradients_reach_the_student_only(mode):
    s = _logits(2, 4, 7).requires_grad_()
    t = _logits(2, 4, 7, seed=1).requires_grad_()
    ki_loss(s, t, torch.randint(0, 7, (2, 4)), alpha=0.5, mode=mode).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_bf16_logits_are_upcast():
    s, t = _logits(3, 9), _logits(3, 9, seed=1)
    labels = torch.tensor([1, 2, 3])
    ref = ki_loss(s.bfloat16().float(), t.bfloat16().float(), labels, 0.5)
    out = ki_loss(s.bfloat16(), t.bfloat16(), labels, 0.5)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(ref.item(), rel=1e-6)


def test_bad_arguments():
    s, t, labels = _logits(2, 5), _logits(2, 5, seed=1), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="mode"):
        ki_loss(s, t, labels, 0.5, mode="medium")
    for alpha in (-0.1, 1.1):
        with pytest.raises(ValueError, match="alpha"):
            ki_loss(s, t, labels, alpha)
    with pytest.raises(ValueError, match="teacher"):
        ki_loss(s, _logits(2, 6), labels, 0.5)
    with pytest.raises(ValueError, match="labels"):
        ki_loss(s, t, torch.tensor([0, 1, 2]), 0.5)
    with pytest.raises(ValueError, match="logits"):
        ki_loss(s[0], t[0], labels[0], 0.5)
