"""One entry point for every experiment: ``python experiments/run.py CONFIG... [--preset P]``.

Examples:
    python experiments/run.py experiments/configs/*.toml            # small preset, CPU
    python experiments/run.py experiments/configs/vit.toml --preset large   # on a GPU
    torchrun --nproc_per_node=2 experiments/run.py experiments/configs/lm_gpt2.toml
    python experiments/run.py --report                               # RESULTS.md only

Results (JSON per run, plots, RESULTS.md) go to experiments/results/.
"""

import sys

from lemonkit.harness.experiment import main

if __name__ == "__main__":
    main(sys.argv[1:])
