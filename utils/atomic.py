"""Files that appear whole or not at all: write under a temporary name in the same folder, then rename.

A crash, a kill or a full disk mid-write leaves the previous file (or no
file) in place, never half of one. Used for results (utils.image_io) and
checkpoints (utils.checkpoint). Temporary files are named
``.<name>.<random>.tmp``; a process killed outright leaves its one behind,
which ``remove_stale_temporaries`` clears (training does at start).
"""
import os
import re
import tempfile
from typing import BinaryIO, Callable, List

__all__ = ['write_atomically', 'remove_stale_temporaries']

# The process's umask, read once at import (reading it means setting it, which is not
# thread-safe): files get the usual permissions rather than mkstemp's 0600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_SUFFIX = '.tmp'


def write_atomically(path: str, write: Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it to `path`.

    `durable` also fsyncs before the rename (checkpoints: the rename must not
    reach the disk before the data). The file gets mode 0666 minus the umask.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files ``write_atomically`` leaves when killed, in `folder`; returns them.

    Only call it where no other process is writing into `folder` at the same time.
    """
    if not os.path.isdir(folder):
        return []
    pattern = re.compile(r'^\..+\.[A-Za-z0-9_]{8}' + re.escape(_SUFFIX) + '$')
    removed = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if pattern.match(name) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return sorted(removed)
