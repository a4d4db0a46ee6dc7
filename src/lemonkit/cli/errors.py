"""The one contract for every failure of the ``lemonkit`` command.

Whatever goes wrong, the user gets one line ``lemonkit: error: ...`` on stderr and exit
status 2 (1 stays "verification says not lossless"), never a traceback; the folder
layer has already removed its temporary folder and never touched the source. An
exception lemonkit did not foresee gets the same line, naming its type and asking for
``--debug`` (which re-raises it, traceback and all).

Example:
    >>> error_line(FileNotFoundError(2, "No such file or directory", "x/config.json"))
    'No such file or directory: x/config.json'
    >>> error_line(ValueError("bad"))
    'unexpected ValueError: bad; re-run with --debug for the traceback'
"""

from __future__ import annotations

import argparse
import errno
import sys

from lemonkit.errors import LemonkitError

EXIT_ERROR = 2
EXIT_NOT_LOSSLESS = 1
EXIT_INTERRUPTED = 130
MAX_CHARS = 600
DEBUG_HINT = "re-run with --debug for the traceback"


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed, cut to ``MAX_CHARS``."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."


def error_line(e: BaseException) -> str:
    """What the user reads after ``lemonkit: error:`` for the exception ``e``."""
    if isinstance(e, LemonkitError):
        return one_line(str(e))
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = f" writing {e.filename}" if e.filename else ""
        return one_line(f"no space left on the device{where}; nothing was written")
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        return one_line(f"{e.strerror}{where}")
    if isinstance(e, MemoryError):
        return "out of memory; nothing was written (try a machine with more memory)"
    return one_line(f"unexpected {type(e).__name__}: {e}") + f"; {DEBUG_HINT}"


def report_error(e: BaseException) -> int:
    """Print the one line for ``e`` on stderr; the exit status."""
    print(f"lemonkit: error: {error_line(e)}", file=sys.stderr)
    return EXIT_ERROR


def interrupted() -> int:
    print("lemonkit: interrupted; no output was left behind", file=sys.stderr)
    return EXIT_INTERRUPTED


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are the same one line (exit 2)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        command = self.prog.split(" ", 1)[1] + " " if " " in self.prog else ""
        hint = f" (see lemonkit {command}--help)"
        print(f"lemonkit: error: {one_line(message)}{hint}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
