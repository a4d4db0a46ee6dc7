"""The ``lemonkit`` command: ``main`` (argparse and the commands) and ``describe`` (the
text of ``lemonkit plan`` and ``lemonkit list``)."""

from lemonkit.cli.main import main

__all__ = ["main"]
