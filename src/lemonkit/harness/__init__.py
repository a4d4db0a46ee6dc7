"""Training side of lemonkit: real data, small training loop, experiment harness.

The pieces: ``data`` (Python-docs text as bytes, Fashion-MNIST images, both from Debian
packages), ``models`` (a model spec -> a ``transformers`` model), ``loop`` (one training
run: AdamW, LEMON schedule, knowledge inheritance, checkpoints, DDP), ``experiment``
(a config file -> every run of a comparison) and ``report`` (JSON -> RESULTS.md + plots).
"""
