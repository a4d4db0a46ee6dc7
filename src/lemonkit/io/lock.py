"""Who may write an output folder, and whose temporary folders may be removed.

- :func:`output_lock`: two runs into the same ``OUT`` at once: the second refuses at
  once (an exclusive ``flock`` on a hidden lock file beside ``OUT``, removed by its
  holder), so neither leaves a half-written ``OUT``.
- :func:`make_temporary`: the hidden folder a run builds its output in, named after its
  owner (a hash of the host name, the PID and the process's start time), made with
  ``os.mkdir`` so the process umask applies as to any folder (no umask games, which
  race with threads).
- :func:`remove_stale_temporaries`: a folder is removed only when its owner is provably
  gone: same host, and no process with that PID and start time. Another host's folders
  (a shared file system) and folders of an unknown format are left alone.

Example::

    with output_lock(out):
        tmp = make_temporary(out)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from lemonkit.errors import LemonkitError

log = logging.getLogger(__name__)

TAG = "lemonkit-"  # every hidden name of a run: .{out}.lemonkit-...


def host_id() -> str:
    """A short, file-name-safe id of this host."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, from ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat(5)


def owner() -> str:
    """This process as a temporary folder names it: ``{pid}-{start}-{host}``."""
    pid = os.getpid()
    return f"{pid}-{start_time(pid) or 0}-{host_id()}"


def _gone(pid: int, start: str, host: str) -> bool:
    """True only when the owner is provably not running (same host, PID gone or reused)."""
    if host != host_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    now = start_time(pid)
    return now is not None and start != "0" and now != start  # the PID was reused


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.{TAG}lock")


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the exclusive right to write ``out``; refuse if another run holds it."""
    path = lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP):
                log.warning("cannot lock %s (%s); going on without a lock", path, e.strerror)
                yield
                return
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LemonkitError(
                    f"another lemonkit run is writing {out} right now; wait for it to "
                    "finish, or choose another output folder"
                ) from e
            raise
        try:  # the holder before us may have removed the file: lock the current one
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def make_temporary(out: Path) -> Path:
    """A new hidden folder beside ``out``, named after this process."""
    while True:
        tmp = out.with_name(f".{out.name}.{TAG}{owner()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp, 0o777)  # the umask applies, as to any folder the user makes
            return tmp
        except FileExistsError:
            continue


def old_name(out: Path) -> Path:
    """Where a replaced ``out`` (``--force``) waits until the new one is in place."""
    return out.with_name(f".{out.name}.{TAG}old-{owner()}")


def remove_stale_temporaries(out: Path) -> None:
    """Remove the temporary folders of runs into ``out`` whose process is gone."""
    pattern = re.compile(
        rf"\.{re.escape(out.name)}\.{TAG}(?:old-)?(\d+)-(\d+)-([0-9a-f]{{8}})(?:-[0-9a-f]+)?"
    )
    for item in out.parent.glob(f".{out.name}.{TAG}*"):
        m = pattern.fullmatch(item.name)
        if m and item.is_dir() and _gone(int(m.group(1)), m.group(2), m.group(3)):
            log.info("removing %s, left by an interrupted run", item)
            shutil.rmtree(item, ignore_errors=True)
