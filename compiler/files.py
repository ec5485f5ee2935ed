"""Output files are written whole or not at all, and the outputs of one command together.

Every file tierplan writes goes to a temporary file in its destination folder; only
when all the files of one command are complete are they renamed over their
destinations, with SIGINT and SIGTERM held back for the renames, so an error, a full
disk or an interrupt never leaves a half-written file, a stray temporary, or a plan
without its annotated model. A write that fails (a destination that is a folder, no
space, no permission) is an :class:`InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from tierplan.compiler.errors import InputError

_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text is UTF-8 encoded) to ``path`` atomically."""
    write_together({path: content})


def write_together(contents: Mapping[Path, str | bytes]) -> None:
    """Write every file of ``contents`` (path -> text or bytes), all or none of them."""
    for path in contents:
        if path.is_dir():
            raise InputError(f"cannot write {str(path)!r}: it is a folder")
    created = sorted({folder for path in contents for folder in _missing_folders(path)})
    temporaries: dict[Path, str] = {}
    written = False
    try:
        for path, content in contents.items():
            temporaries[path] = _write_temporary(path, content)
        with _signals_held():
            _rename_all(temporaries)
            written = True
    except OSError as error:
        raise InputError(
            f"cannot write {_failed_path(error, contents)!r}: {_reason(error)}"
        ) from None
    finally:
        for temporary in temporaries.values():
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        for folder in reversed(created if not written else []):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _missing_folders(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet (writing creates them)."""
    return [folder for folder in path.parents if not folder.exists()]


def _write_temporary(path: Path, content: str | bytes) -> str:
    """A complete temporary copy of ``content`` beside ``path``, with a plain file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content.encode() if isinstance(content, str) else content)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def _rename_all(temporaries: dict[Path, str]) -> None:
    """Rename each temporary over its destination; on a failure, undo the ones done."""
    done: list[Path] = []
    try:
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
            done.append(path)
    except OSError:
        for path in done:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT and SIGTERM until the block ends, then raise them again.

    Handlers, not a signal mask: a mask holds a signal back from one thread only, and
    the kernel hands a process signal to any other thread (numpy's, OR-Tools'), after
    which Python runs the handler in the main thread anyway. Handlers can only be set
    from the main thread; elsewhere the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        number: signal.signal(number, lambda number, _: received.append(number))
        for number in _HELD_SIGNALS
        if signal.getsignal(number) is not None  # None: set outside Python, left alone
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for caught in received:
            signal.raise_signal(caught)


def _failed_path(error: OSError, contents: Mapping[Path, str | bytes]) -> str:
    """The destination a failed system call was about (its temporary names it)."""
    for name in (error.filename2, error.filename):
        for path in contents:
            if name is not None and (
                str(name) == str(path) or Path(str(name)).name.startswith(f".{path.name}.")
            ):
                return str(path)
    return str(next(iter(contents)))


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
