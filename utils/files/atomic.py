"""Files that appear whole or not at all, and folders one process at a time.

Atomic files: write under a temporary name in the same folder, then rename. A
crash, a kill or a full disk mid-write leaves the previous file (or no file)
in place, never half of one. Used for results (utils.files.image_io, the .mat files
of the Denoising test scripts), checkpoints (utils.files.checkpoint) and ONNX
exports. Temporary files are named ``.<name>.<random>.tmp``; a process killed
outright leaves its one behind, which ``remove_stale_temporaries`` clears
(training does at start, once it holds its folder). A write told not to replace
(``replace=False``, every writer without --overwrite) publishes with a hard link,
which fails when another process wrote the name meanwhile.

Output files (``check_output_file``): the rules every single-file writer checks
before its work: never a folder or an input, never an existing file without --overwrite.

Folder locks (``hold_folder``): a training run holds its MODEL.SESSION folder
through a lock file naming its pid and host, so a second run of the same
session is refused instead of silently writing over the first.
"""
import contextlib
import errno
import fcntl
import os
import re
import socket
import tempfile
from typing import BinaryIO, Callable, Iterator, List, Optional, Sequence, Tuple

__all__ = ['write_atomically', 'atomic_output', 'OutputAppearedError', 'OutputRefusedError', 'check_output_file',
           'remove_stale_temporaries', 'FolderLockedError', 'hold_folder', 'LOCK_NAME']

# The process's umask, read once at import (reading it means setting it, which is not
# thread-safe): files get the usual permissions rather than mkstemp's 0600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_SUFFIX = '.tmp'
LOCK_NAME = '.lock'


class OutputAppearedError(FileExistsError):
    """A file that must not be replaced appeared at an output's name after the run checked it
    (another run writing into the same folder); it is kept and the new output dropped."""


def _publish(tmp: str, path: str, replace: bool) -> None:
    """Give the finished temporary `tmp` the name `path`. With `replace` False a file already
    there is kept: a hard link fails when the name exists (atomically, unlike a check before a
    rename), except that a 0-byte file counts as no result (our writes never leave one)."""
    if not replace:
        try:
            try:
                os.link(tmp, path)
                os.remove(tmp)
                return
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # A file system without hard links: claim the name first, then fill it atomically.
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK))
        except FileExistsError:
            if not (os.path.isfile(path) and os.path.getsize(path) == 0):
                raise OutputAppearedError(f'{path} appeared while this run was working (another run writing into '
                                          'the same folder?); it was kept and this result dropped') from None
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str, durable: bool = False, replace: bool = True) -> Iterator[str]:
    """The path of an empty temporary file beside `path`, for code that writes files by name
    (exporters, savers that take a path); renamed to `path` when the block ends without an
    exception, removed when it raises. Only the temporary is ever deleted: a file already
    at `path` stays as it was unless the block succeeds.

    `durable` fsyncs before the rename (checkpoints: the rename must not reach the
    disk before the data). `replace` False never replaces a file that appeared at `path`
    meanwhile (``OutputAppearedError``). The file gets mode 0666 minus the umask.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The name's first 100 characters: a result named up to the file system's 255 would otherwise
    # get a temporary name too long to create.
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path)[:100] + '.', suffix=_SUFFIX, dir=folder)
    os.close(fd)
    try:
        yield tmp
        if durable:
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        _publish(tmp, path, replace)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno is not None:
            # Name the file: a bare "[Errno 28] No space left on device" does not say which write failed.
            raise OSError(err.errno, f'cannot write {path}: {err.strerror or err}; the previous file, if any, '
                          'is unchanged') from err
        raise


def write_atomically(path: str, write: Callable[[BinaryIO], None], durable: bool = False,
                     replace: bool = True) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it to `path` (``atomic_output``).

    A failed write raises OSError naming `path`; the previous file is kept and no temporary is left.
    """
    with atomic_output(path, durable, replace) as tmp:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()


class OutputRefusedError(ValueError):
    """An output option names a file the run may not write (an input, a folder, a file that
    exists without --overwrite); the message names the option and what to do."""


def check_output_file(path: str, option: str, overwrite: bool, inputs: Sequence[Tuple[str, str]] = ()) -> None:
    """The rules every writer of one output file follows, checked before any work: `path` is not a
    folder, not one of `inputs` ((what, path) pairs such as ('the --weights file', p)) through any
    link, even with `overwrite`, and not an existing file unless `overwrite`. Write it afterwards
    with ``write_atomically(..., replace=overwrite)``, which also keeps one that appears meanwhile."""
    if os.path.isdir(path):
        raise OutputRefusedError(f'{option} {path} is a folder; give the path of the file to write')
    real = os.path.realpath(path)
    for what, other in inputs:
        if os.path.realpath(other) == real or (os.path.exists(path) and os.path.exists(other)
                                               and os.path.samefile(path, other)):
            raise OutputRefusedError(f'{option} {path} is {what}; choose another name (inputs are never replaced, '
                                     'even with --overwrite)')
    if os.path.lexists(path) and not overwrite:
        raise OutputRefusedError(f'{option} {path} exists; pass --overwrite to replace it, or choose another name')


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files ``write_atomically`` leaves when killed, in `folder`; returns them.

    Only call it where no other process is writing into `folder` at the same time
    (training holds the folder with ``hold_folder`` first).
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


class FolderLockedError(FileExistsError):
    """Another live process holds the folder (or one on another host may); the message names it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _read_owner(lock: str) -> Optional[List[str]]:
    """[pid, host] written in `lock`, or None when it is gone or holds something else."""
    try:
        with open(lock, 'rb') as f:
            fields = f.read(256).decode('utf-8', 'replace').split()  # junk is unreadable, not an error
    except FileNotFoundError:
        return None
    return fields if len(fields) == 2 and fields[0].isdigit() else None


@contextlib.contextmanager
def hold_folder(folder: str, what: str, notes: Optional[List[str]] = None) -> Iterator[str]:
    """Hold `folder` (created if needed) for this process until the block ends, however it ends.

    The lock is the file LOCK_NAME in `folder`, created with O_CREAT|O_EXCL and holding
    "<pid> <host>". One left by a dead process on this host (a kill -9, a power cut) is
    stale: it is replaced, and a line saying so is appended to `notes`. A live owner, or
    one on another host (whose pid cannot be checked from here), raises FolderLockedError
    naming `what` (e.g. 'MODEL.SESSION x'), the owner and the lock file. A folder this
    call created is removed again if it is still empty when the block ends.
    """
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    lock, host, me = os.path.join(folder, LOCK_NAME), socket.gethostname(), str(os.getpid())
    # The folder's own flock serialises taking and replacing the lock among processes on this
    # host: without it two runs could both find the same stale lock, and the second would
    # delete the lock the first had just written.
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        if os.path.islink(lock) or (os.path.lexists(lock) and not os.path.isfile(lock)):
            # Not what this module writes (a regular file), so not ours to replace.
            kind = 'a symbolic link' if os.path.islink(lock) else 'not a regular file (a folder?)'
            raise FolderLockedError(f'{what}: its lock {lock} is {kind}, which no run writes; remove it if no run '
                                    'is active')
        owner = _read_owner(lock)
        if os.path.exists(lock):
            if owner is None or (owner[1] == host and not _pid_alive(int(owner[0]))):
                os.remove(lock)
                if notes is not None:
                    left = f'by process {owner[0]}, no longer running' if owner else 'unreadable'
                    notes.append(f'replaced the stale lock {lock} ({left})')
            else:
                where = 'this host' if owner[1] == host else f'host {owner[1]}'
                raise FolderLockedError(
                    f'{what} is in use by process {owner[0]} on {where} (lock {lock}); wait for it to finish, '
                    'or choose another MODEL.SESSION' +
                    ('' if owner[1] == host else f'; if no run is active on {owner[1]}, delete the lock'))
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
        with os.fdopen(fd, 'w') as f:
            f.write(f'{me} {host}\n')
    finally:
        os.close(dir_fd)  # closing releases the flock
    try:
        yield lock
    finally:
        if _read_owner(lock) == [me, host]:
            os.remove(lock)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only succeeds when empty
