"""One entry point for every experiment: ``python experiments/run.py CONFIG... [--preset P]``.

Examples:
    python experiments/run.py experiments/configs/*.toml            # small preset, CPU
    python experiments/run.py experiments/configs/vit.toml --preset large   # on a GPU
    torchrun --nproc_per_node=2 experiments/run.py experiments/configs/lm_gpt2.toml
    python experiments/run.py --report                               # RESULTS.md only

Results (JSON per run, plots, RESULTS.md) go to experiments/results/ next to this file
(``--out`` elsewhere), wherever it is run from.
"""

import sys
from pathlib import Path

from lemonkit.harness.cli import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], default_out=RESULTS))
