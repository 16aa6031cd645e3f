"""
Writing a file so that no reader ever sees half of it.

Checkpoints, ``last_checkpoint``, the registered COCO json of ``--dataset``, ``metrics.png`` and the
demo's pictures are all read by something else while a run may be killed (a pre-empted job, a
Ctrl-C, a full disk). Each is written to a temporary file beside its destination and renamed onto
it only once complete: ``os.replace`` is atomic on POSIX and Windows when both names are on one
file system, which the same folder guarantees.
"""
import contextlib
import os
import uuid
from typing import IO, Iterator

__all__ = ["atomic_write"]


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
    directory, basename = os.path.split(os.path.abspath(path))
    # Hidden, and unique per writer: a crash leaves at worst a dot-file, never a clash.
    tmp_path = os.path.join(directory, f".{basename}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp_path, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
