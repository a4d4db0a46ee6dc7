"""``make demo``: build small models, expand them every way, verify, print the errors.

Everything is built from configs on the spot; nothing is downloaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

import lemonkit
from lemonkit.error_table import measure, measure_resnet, to_markdown
from lemonkit.zoo import build

OUT = Path("demo_out")


def main() -> None:
    hf_logging.set_verbosity_error()
    start = time.perf_counter()
    print(f"lemonkit {lemonkit.__version__}: lossless expansion demo\n")
    small = build("llama", dtype=torch.float32)
    big = lemonkit.expand(small, hidden_size=96, num_layers=3, intermediate_size=160)
    print(
        f"LLaMA {small.config.hidden_size}x{small.config.num_hidden_layers} "
        f"({sum(p.numel() for p in small.parameters()):,} params) -> "
        f"{big.config.hidden_size}x{big.config.num_hidden_layers} "
        f"({sum(p.numel() for p in big.parameters()):,} params)"
    )
    print(lemonkit.verify(small, big), "\n")
    print("Every architecture x every expansion (float64 rel error / float32 rel error):")
    table = to_markdown(measure()) + "\n\n" + measure_resnet()
    print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "error_table.md").write_text(table + "\n")
    print(f"\nwritten to {OUT / 'error_table.md'} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
