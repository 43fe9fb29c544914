"""The one home of replacing files and folders safely, and of run-folder locks.

- atomic_write / atomic_path: a unique temp file beside the target, fsync'd, renamed over it, folder
  fsync'd. Readers see the old file or the new one, never half of one. Only a regular file is ever
  replaced: a device, FIFO, socket or folder at the target is refused (UserError), and a symlink is
  followed to its target, which must itself be a regular file (or missing) outside /dev and /proc
  (a link to /dev/stdout, /dev/full... is refused, never replaced by a file).
- replace_folder: a whole folder replaced so that one complete version exists at every instant
  (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames with SIGINT/SIGTERM blocked, and a
  leftover recovered by the next call).
- run_lock: an fcntl.flock on `.lock` inside a run folder, holding the holder's PID, so a second run
  given the same --out is one error naming that process.
- remove_stale_temps: temp files (and folders) `.NAME.PID.HEX.tmp` of processes that no longer run.
"""
import contextlib
import ctypes
import ctypes.util
import os
import re
import secrets
import shutil
import signal
import stat
from pathlib import Path

from .errors import UserError

TEMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"                                         # replace_folder's fallback: the old version
LOCK_NAME = ".lock"
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+(?P<suffix>\.tmp|\.old)$")
DEVICE_ROOTS = ("/dev", "/proc", "/sys")                     # never written through a link
RENAME_EXCHANGE = 2                                         # linux/fs.h
AT_FDCWD = -100


def temp_path(path, suffix=TEMP_SUFFIX):
    """A fresh temp name beside path: unique per process and call, so two writers never collide."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


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


def _kind(mode):
    """What a non-regular file is, in words."""
    for test, word in ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return word
    return "special file"


def writable_target(path):
    """The path an atomic write replaces: path itself, or a symlink's regular-file target; UserError
    when what is there is not a regular file (so a device, FIFO, socket or folder is never replaced)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError:
        return path                                         # the write itself reports it
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISLNK(mode):
        target = Path(os.path.realpath(path))
        try:
            tmode = os.stat(target).st_mode
        except OSError:
            tmode = None
        special = str(target) == "/" or any(str(target).startswith(r + "/") for r in DEVICE_ROOTS)
        if tmode is not None and stat.S_ISREG(tmode) and not special:
            return target                                   # the link stays; its file is replaced
        what = "a broken symlink" if tmode is None else \
            f"a symlink to {target} ({'a device or system file' if special else 'a ' + _kind(tmode)})"
        raise UserError(f"{path}: is {what}; only a regular file is replaced: remove it or choose "
                        "another path")
    raise UserError(f"{path}: is a {_kind(mode)}, not a regular file, and is never replaced by one: "
                    "choose another path (a file name in a folder you own)")


@contextlib.contextmanager
def atomic_path(path):
    """with atomic_path(p) as tmp: write tmp by any means; on success it replaces p, on error it goes."""
    path = writable_target(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(folder, path.name)                   # a crashed writer's leftovers of this file
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:                         # flush what the writer left to disk
            os.fsync(f.fileno())
        writable_target(path)                               # still a regular file (or none) now
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


def remove_stale_temps(folder, name=None):
    """Remove temp files of `name` (None: of any name) in folder left by processes that no longer run;
    returns how many. A temp folder goes too; replace_folder's leftover old version is recovered."""
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for tmp in Path(folder).glob(".*"):
        m = TEMP_RE.match(tmp.name)
        if not m or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        if m["suffix"] == OLD_SUFFIX:
            _recover_old(tmp, tmp.with_name(m["name"]))
            continue
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed += 1
    return removed


def _alive(pid):
    """True when a process with this id exists (ours or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# ---- folders -------------------------------------------------------------------------------------

def _libc_renameat2():
    """libc's renameat2, or None where there is none (not Linux, old glibc, musl without it)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def exchange(a, b):
    """Swap two existing paths in one step (renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = _libc_renameat2()
    if fn is None:
        return False
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):                                 # EINVAL, ENOSYS, EOPNOTSUPP: use the fallback
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def signals_blocked():
    """SIGINT and SIGTERM held back (delivered on exit) so a few system calls run as one step."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _recover_old(old, folder):
    """A fallback replacement stopped between its renames: put the old version back if none is there."""
    with contextlib.suppress(OSError):
        if folder.exists() or folder.is_symlink():
            shutil.rmtree(old)
        else:
            os.rename(old, folder)


def replace_folder(new, folder):
    """Make the complete folder `new` (beside `folder`) be `folder`; the old version is removed after.
    At every instant `folder` is the old version or the new one, whole."""
    new, folder = Path(new), Path(folder)
    if not (folder.exists() or folder.is_symlink()):
        os.rename(new, folder)                              # atomic; fails if one appeared meanwhile
    elif folder.is_symlink() or not folder.is_dir():
        raise UserError(f"{folder}: is not a folder (a {'symlink' if folder.is_symlink() else 'file'}): "
                        "choose a new folder to write")
    elif exchange(new, folder):
        shutil.rmtree(new, ignore_errors=True)              # `new` now holds the old version
    else:
        old = temp_path(folder, OLD_SUFFIX)
        with signals_blocked():
            os.rename(folder, old)
            os.rename(new, folder)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(folder.parent if str(folder.parent) else Path("."))


@contextlib.contextmanager
def folder_swap(folder, drop=()):
    """with folder_swap(out) as tmp: write a whole folder into tmp; on success it replaces `folder`
    (replace_folder), on error it goes. Files of the old folder not written, except names in drop,
    are carried over (hard links, or copies) so that only what was written changes."""
    folder = Path(folder)
    parent = folder.parent if str(folder.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(parent, folder.name)                 # and recover an interrupted fallback
    tmp = temp_path(folder)
    try:
        tmp.mkdir()
        yield tmp
        if folder.is_dir() and not folder.is_symlink():
            _carry_over(folder, tmp, set(drop))
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _carry_over(old, new, skip):
    """Hard-link (or copy) old's entries that new lacks and that are not in skip into new."""
    for entry in old.iterdir():
        if entry.name in skip or (new / entry.name).exists() or TEMP_RE.match(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(src, dst):
    """A hard link where the file system allows one, else a copy."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
    return dst


# ---- run folders ---------------------------------------------------------------------------------

_HELD = {}                                                  # resolved folder -> this process's RunLock


class RunLock:
    """An exclusive fcntl.flock on folder/.lock, which holds the holder's PID; release() or exit frees it."""

    def __init__(self, folder):
        import fcntl                                        # POSIX only; imported where it is used
        self.folder, self.path = Path(folder), Path(folder) / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(self.fd)
            raise UserError(f"{self.folder}: another run (process {holder}) is writing this run folder; "
                            "wait for it to finish, stop it, or choose another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self):
        """Free the lock (the file stays: removing it would race a run taking it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        _HELD.pop(os.path.realpath(self.folder), None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def run_lock(folder):
    """Lock a run folder (created if missing) for this process, and clear dead writers' temp files;
    a UserError naming the holder's PID when another process holds it (this one: the same lock)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    if key not in _HELD:
        _HELD[key] = RunLock(folder)
    remove_stale_temps(folder)
    return _HELD[key]


def release_run_locks():
    """Free every run-folder lock this process holds (a command's end; exiting frees them too)."""
    for lock in list(_HELD.values()):
        lock.release()
