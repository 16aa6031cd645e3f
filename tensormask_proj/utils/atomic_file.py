"""
Writing a file so that no reader ever sees half of it.

Checkpoints, ``last_checkpoint``, the registered COCO json of ``--dataset``, ``metrics.png`` and the
demo's pictures are all read by something else while a run may be killed (a pre-empted job, a
Ctrl-C, a full disk). Each is written to a temporary file beside its destination and renamed onto
it only once complete: ``os.replace`` is atomic on POSIX and Windows when both names are on one
file system, which the same folder guarantees.

A writer killed before the rename (``kill -9``, a power cut) leaves its temporary file behind:
:func:`remove_stale_temporary_files` deletes those of a folder whose writer is gone.
"""

import contextlib
import errno
import os
import re
import uuid
from typing import IO, Iterator, List

__all__ = ["atomic_write", "remove_stale_temporary_files"]

# The temporary name of atomic_write: ".<basename>.<pid>.<8 hex digits>.tmp" (hidden, unique per
# writer); older versions wrote ".<basename>.<pid>.tmp". The shortest basename is taken, so that
# an all-digit random part is never read as the pid.
_TEMPORARY_NAME = re.compile(r"^\.(?P<basename>.+?)\.(?P<pid>[0-9]+)(\.[0-9a-f]{8})?\.tmp$")


def _temporary_path(path: str) -> str:
    directory, basename = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{basename}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO]:
    """
    Open a temporary file beside ``path`` for writing; when the ``with`` block ends without an
    exception, flush it to disk and rename it onto ``path``.

    Readers of ``path`` see the previous file or the new one, never a partial one. If the block
    (or the rename) raises, ``path`` keeps its previous content and the temporary file is
    removed. Several processes may write the same ``path`` at once (the ranks of a multi-GPU
    run registering the same dataset): each writes its own temporary file and the last rename
    wins. The new file gets the permissions ``open`` gives (the umask's), not a private mode.

    Args:
        path: the destination; its folder must exist.
        mode: "wb" (default) or "w".

    Yields:
        the open temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r} (for {path})")
    # Hidden, and unique per writer: a crash leaves at worst a dot-file, never a clash.
    tmp_path = _temporary_path(path)
    try:
        with open(tmp_path, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def _process_is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the process exists
    except OSError as e:
        return e.errno == errno.EPERM  # it exists, under another user
    return True


def remove_stale_temporary_files(directory: str) -> List[str]:
    """
    Delete the temporary files that :func:`atomic_write` left in ``directory`` when its process
    was killed: files named as its temporary files whose writer process is no longer running on
    this machine. Nothing else is touched (not other dot-files, not a live writer's file).

    Returns:
        the paths removed.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        match = _TEMPORARY_NAME.match(name)
        if match is None or _process_is_running(int(match.group("pid"))):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
                removed.append(path)
        except FileNotFoundError:  # removed meanwhile by another process
            pass
    return removed
