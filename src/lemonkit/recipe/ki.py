"""Knowledge inheritance (KI; Qin et al. 2021), the baseline of LEMON's appendix A.3.

The large model (student) learns from the labels and from the small model's (teacher's)
predictions::

    loss = (1 - alpha) * CE(student, labels) + alpha * L_KI(student, teacher)

with ``alpha`` falling linearly from 0.5 to 0 (``ki_alpha``). Soft KI:
``L_KI = KL(p_teacher || p_student)``; hard KI: ``L_KI = KL(e_argmax(teacher) || p_student)``,
which is the cross-entropy of the student against the teacher's argmax.

The KL direction. The paper writes ``KL(f_L || f_S)`` (student first). Read literally,
the hard variant ``KL(p_student || e_argmax)`` is infinite wherever the student puts mass
off the argmax, i.e. always; only the teacher-first direction ``KL(e || p_student)`` is
finite. So the notation means "target first", as in Qin et al. and in distillation, and
soft KI here is the same direction, ``KL(p_teacher || p_student)`` (forward KL, averaged
over positions). The teacher gets no gradient (its logits are detached).

Shapes: logits ``(B, T, V)`` with labels ``(B, T)``, or ``(B, V)`` with ``(B,)``; the labels
must be aligned with the logits. A causal LM's ``labels`` are shifted inside its forward,
so shift them yourself: ``ki_loss(s.logits[:, :-1], t.logits[:, :-1], labels[:, 1:], a)``.
Positions whose label is ``ignore_index`` count in neither term. The loss is computed in
float32 (bf16/fp16 logits are upcast).

Example:
    >>> [ki_alpha(s, 100) for s in (0, 50, 100, 150)]
    [0.5, 0.25, 0.0, 0.0]
    >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
    >>> labels = torch.tensor([0])
    >>> round(float(ki_loss(logits, logits, labels, alpha=0.0)), 4)  # CE alone
    0.1698
    >>> round(float(ki_loss(logits, logits, labels, alpha=0.5)), 4)  # KL(p || p) = 0: half CE
    0.0849
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("soft", "hard")


def ki_alpha(step: int, num_steps: int, start: float = 0.5) -> float:
    """KI strength at ``step``: ``start`` at step 0, linearly down to 0 at ``num_steps``,
    0 after (the paper: start 0.5)."""
    if not 0 <= start <= 1:
        raise ValueError(f"start must be in [0, 1], got {start}")
    if step < 0 or num_steps < 0:
        raise ValueError(f"step and num_steps must be >= 0, got {step} and {num_steps}")
    if step >= num_steps:
        return 0.0
    return start * (1.0 - step / num_steps)


def ki_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    mode: str = "soft",
    ignore_index: int = -100,
) -> torch.Tensor:
    """``(1 - alpha) * CE(student, labels) + alpha * L_KI``, a scalar averaged over the
    positions whose label is not ``ignore_index`` (0 if there are none)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.dim() not in (2, 3):
        raise ValueError(f"logits must be (B, V) or (B, T, V), got {tuple(student_logits.shape)}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} differ from the student's "
            f"{tuple(student_logits.shape)}"
        )
    if labels.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"labels {tuple(labels.shape)} do not match logits {tuple(student_logits.shape)}"
        )
    vocab = student_logits.shape[-1]
    log_p_student = F.log_softmax(student_logits.reshape(-1, vocab).float(), dim=-1)
    labels = labels.reshape(-1)
    mask = labels != ignore_index
    count = mask.sum().clamp(min=1)

    def mean(per_position: torch.Tensor) -> torch.Tensor:
        return (per_position * mask).sum() / count

    # gather needs a valid index at ignored positions; they are masked out of the mean
    safe_labels = labels.masked_fill(~mask, 0)
    ce = mean(-log_p_student.gather(1, safe_labels[:, None]).squeeze(1))
    if alpha == 0:
        return ce
    teacher = teacher_logits.detach().reshape(-1, vocab).float()
    if mode == "soft":
        log_p_teacher = F.log_softmax(teacher, dim=-1)
        per_position = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True)
        inherited = mean(per_position.sum(-1))
    else:
        inherited = mean(-log_p_student.gather(1, teacher.argmax(-1)[:, None]).squeeze(1))
    return (1 - alpha) * ce + alpha * inherited
