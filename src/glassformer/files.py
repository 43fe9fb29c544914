"""The one atomic write: a unique temp file beside the target, fsync'd, renamed over it, folder fsync'd.

Readers see the old file or the new one, never half of one; a crash leaves at most a temp file whose
name says whose it was (remove_stale_temps cleans those up).
"""
import contextlib
import glob
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path(path):
    """A fresh temp name beside path: unique per process and call, so two writers never collide."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _fsync_dir(folder):
    """fsync a folder so the rename itself survives a power cut (a no-op where folders can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """with atomic_path(p) as tmp: write tmp by any means; on success it replaces p, on error it goes."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(folder, path.name)                   # a crashed writer's leftovers of this file
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:                         # flush what the writer left to disk
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_write(path, mode="w"):
    """with atomic_write(p, "wb") as f: ... writes p atomically ("w": UTF-8 text, "wb": bytes)."""
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path, text):
    """Write a UTF-8 text file atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_bytes(path, data):
    """Write a binary file atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def remove_stale_temps(folder, name):
    """Remove temp files of `name` in folder left by processes that no longer run; returns how many."""
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for tmp in Path(folder).glob(f".{glob.escape(name)}.*{TEMP_SUFFIX}"):
        pid = tmp.name[len(name) + 2:].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def _alive(pid):
    """True when a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
