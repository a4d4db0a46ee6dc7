"""The experiment harness: real data, a small training loop, configs -> runs -> RESULTS.md.

Not needed to expand a model: ``import lemonkit`` does not import it. It uses lemonkit's
public API only (``expand``, ``get_lemon_schedule``, ``ki_loss``, ``ki_alpha``,
``LemonkitError``, ``METHODS`` / ``DEPTHS``). Its modules, from the bottom up:

- ``errors``: ``HarnessError`` (a ``LemonkitError``) and its kinds.
- ``data``: ``TextData`` / ``ImageData`` and their batches, a function of (seed, step).
- ``sources``: a config's ``[data]`` table -> data (``load_source``; a registry of kinds).
- ``models``: a model spec -> a stock ``transformers`` model; FLOPs per step.
- ``checkpoints``: atomic checkpoints of a run, resume, clean-up.
- ``loop``: one training run (AdamW, LEMON schedule, KI, validation, DDP).
- ``runs``: the runs of an experiment (``run_specs``), their names, groups, labels, colours.
- ``experiment``: a config preset -> every run, cached as JSON (``cache_key``).
- ``plots``, ``report``: run JSONs -> curves, savings, ``RESULTS.md``.
- ``cli``: the command line behind ``experiments/run.py``.
"""
