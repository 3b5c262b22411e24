"""Small shared helpers: atomic writes of one file or of a group of files."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Union

__all__ = ["atomic_write", "atomic_write_group", "WriteError", "check_writable"]

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


def atomic_write_group(writes: Mapping[PathLike, Callable[[str], None]]) -> None:
    """Write several files so that a failure leaves none of them new.

    Every file is first written in full to a temporary file beside it (this is
    where a full disk or a crash strikes); only then are all renamed into place.
    Should a rename fail, the renamed ones are restored from hard links of the old
    files. Special files (devices, pipes) are written through, after the others.
    """
    regular: list[tuple[Path, Path, Callable]] = []
    special: list[tuple[Path, Callable]] = []
    for path, write in writes.items():
        path = Path(path)
        if _is_special(path):
            special.append((path, write))
        else:
            regular.append((path, _target(path), write))
    temps: list[tuple[Path, str]] = []
    try:
        umask = os.umask(0)
        os.umask(umask)
        for path, target, write in regular:
            if target.is_dir():
                raise WriteError(f"{path}: is a folder; expected a file name")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                os.close(fd)
                temps.append((target, tmp))
                write(tmp)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
            except WriteError:
                raise
            except Exception as exc:
                raise WriteError(f"{path}: cannot write ({_describe(exc)}); "
                                 f"the previous file, if any, is unchanged") from exc
        _replace_all(temps)
        temps = []
    finally:
        for _, tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
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
