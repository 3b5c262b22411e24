"""Small shared helpers: atomic writes of one file or of a group of files."""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Union

__all__ = ["atomic_write", "atomic_write_group", "StagedFiles", "CommitOnSuccess", "WriteError", "check_writable", "duration"]

PathLike = Union[str, Path]


class WriteError(OSError):
    """An output file could not be written; the message names the file and the cause."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "enforce fail" in first or "PytorchStreamWriter" in first or "file write failed" in first:
        return "the write failed (disk full?)"
    return first


def _target(path: Path) -> Path:
    """What a write to ``path`` should replace: a symlink's target, not the link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _is_special(path: Path) -> bool:
    """A device node, pipe or socket (``/dev/stdout``, ``/dev/null``, a FIFO): written
    through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_writable(path: PathLike, what: str = "output") -> None:
    """Fail before long work when ``path`` cannot be written: a folder, a missing or
    read-only folder. ``what`` names the option in the message."""
    path = Path(path)
    if _is_special(path):
        return
    if path.is_dir():
        raise WriteError(f"{what} {path}: is a folder; expected a file name")
    target = _target(path)
    parent = target.parent
    if not parent.exists():
        raise WriteError(f"{what} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise WriteError(f"{what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(f"{what} {path}: folder {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK) and not os.access(parent, os.W_OK):
        raise WriteError(f"{what} {path}: file is not writable")


def atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: a reader never sees a half file.

    A symlink's target is replaced (the link stays); a device, pipe or socket
    (``/dev/stdout``) is written through. Errors name the file.
    """
    atomic_write_group({path: write})


class CommitOnSuccess:
    """A ``with`` block that commits what it wrote when it ends normally and aborts it on
    any exception (an error, a cancel, Ctrl-C); subclasses define ``commit`` and ``abort``."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# Temporaries are named ".NAME.PID@HOST.XXXXXXXX.tmp": a process killed outright (SIGKILL,
# power loss) cannot remove its own, and the name says whose it was.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal, only whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM), or cannot tell: alive
        return True
    return True


def _remove_stale_temps(target: Path) -> None:
    """Remove the temporaries beside ``target`` that a process of this machine left when
    it was killed (its PID is gone). Those of live processes, of other machines (a shared
    folder) and files named otherwise are left alone. POSIX only (on Windows ``os.kill``
    would end the process)."""
    if os.name != "posix":
        return
    own = re.compile(rf"\.{re.escape(target.name)}\.(\d+)@{re.escape(_HOST)}\.[A-Za-z0-9_]+\.tmp")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        match = own.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass  # not ours to insist on


class StagedFiles(CommitOnSuccess):
    """Temporary files beside final paths, for output written over a long time (a
    table streamed while a movie is localized): write to ``staged[path]``;
    ``commit()`` renames them all into place as one group, ``abort()`` — or leaving
    a ``with`` block on an exception, a cancel or Ctrl-C — removes them. Nothing
    under a final name is ever half-written. Regular files only; a symlink's target
    is what gets replaced. The temporaries a killed process left beside the same
    files (``.NAME.PID@HOST.XXXXXXXX.tmp``, its PID gone) are removed first.
    """

    def __init__(self, paths):
        self._temps: dict[Path, tuple[Path, str]] = {}
        umask = os.umask(0)
        os.umask(umask)
        self._mode = 0o666 & ~umask  # mkstemp makes 0600; the files get normal permissions
        try:
            for path in paths:
                path = Path(path)
                target = _target(path)
                if target.is_dir():
                    raise WriteError(f"{path}: is a folder; expected a file name")
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _remove_stale_temps(target)
                    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}@{_HOST}.", suffix=".tmp",
                                               dir=target.parent)
                    os.close(fd)
                except OSError as exc:
                    raise WriteError(f"{path}: cannot write ({_describe(exc)}); "
                                     f"the previous file, if any, is unchanged") from exc
                self._temps[path] = (target, tmp)
        except BaseException:
            self.abort()
            raise

    def __getitem__(self, path: PathLike) -> str:
        return self._temps[Path(path)][1]

    def commit(self) -> None:
        try:
            for target, tmp in self._temps.values():
                os.chmod(tmp, self._mode)
            _replace_all(list(self._temps.values()))
            self._temps = {}
        finally:
            self.abort()

    def abort(self) -> None:
        for _, tmp in self._temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._temps = {}


def atomic_write_group(writes: Mapping[PathLike, Callable[[str], None]]) -> None:
    """Write several files so that a failure leaves none of them new.

    Every file is first written in full to a temporary file beside it (this is
    where a full disk or a crash strikes); only then are all renamed into place.
    Should a rename fail, the renamed ones are restored from hard links of the old
    files. Special files (devices, pipes) are written through, after the others.
    """
    regular = {Path(p): w for p, w in writes.items() if not _is_special(Path(p))}
    special = [(Path(p), w) for p, w in writes.items() if _is_special(Path(p))]
    with StagedFiles(regular) as staged:
        for path, write in regular.items():
            try:
                write(staged[path])
            except WriteError:
                raise
            except Exception as exc:
                raise WriteError(f"{path}: cannot write ({_describe(exc)}); "
                                 f"the previous file, if any, is unchanged") from exc
    for path, write in special:
        try:
            write(str(path))
        except Exception as exc:
            raise WriteError(f"{path}: cannot write ({_describe(exc)})") from exc


def _replace_all(temps: list[tuple[Path, str]]) -> None:
    """Rename temporaries onto their targets; on failure put the old files back."""
    backups: list[tuple[Path, str | None, bool]] = []
    try:
        for target, _ in temps:
            backup, existed = None, target.exists()
            if len(temps) > 1 and target.is_file():
                backup = f"{target.parent}/.{target.name}.{os.getpid()}.old"
                try:
                    if os.path.exists(backup):
                        os.unlink(backup)
                    os.link(target, backup)
                except OSError:
                    backup = None  # no hard links here: the rename window stays (it is short)
            backups.append((target, backup, existed))
        done = []
        try:
            for target, tmp in temps:
                os.replace(tmp, target)
                done.append(target)
        except BaseException as exc:
            for target, backup, existed in backups:
                if target in done:
                    if backup is not None:
                        os.replace(backup, target)
                    elif not existed:
                        os.unlink(target)
            if not isinstance(exc, Exception):
                raise
            raise WriteError(f"{temps[len(done)][0]}: cannot write ({_describe(exc)}); no file was changed") from exc
    finally:
        for _, backup, _ in backups:
            if backup is not None and os.path.exists(backup):
                os.unlink(backup)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where oneDNN
    runs it faster than float32; elsewhere bf16 is emulated and slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, as a time left is shown."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
