"""Safe outputs: checked names, private temporaries, renames into place, stale cleanup.

An interrupted run never leaves a half-written table, image or checkpoint behind, and a
run never deletes what it did not create:

* :func:`check_output` refuses, before any work, an output whose name is not one of its
  kind (:class:`OutputKind`: ``embed --out e1.parquet``), an existing folder unless the
  output is a folder format, the folder is recognisably that kind of output (a feature
  store by its spec, an OME-Zarr by its multiscales metadata, a run by its
  ``config.json``) with nothing else in it, and the user asked to overwrite it — and an
  output that is one of the command's inputs. :func:`atomic_paths` checks the folder
  again just before it replaces it.
* An ``OSError`` raised while writing names the user's path, never the private
  temporary (:func:`user_os_error`).
* :func:`atomic_path` / :func:`atomic_paths` give the writer a path inside a fresh private
  directory beside the target (``mkdtemp``: no name another process could take between
  creating and using it) and rename the result over the target at the end.
* Temporary and scratch directories carry the owning process id in their names
  (``.patchwise-tmp-<pid>-*``, ``.patchwise-scratch-<pid>-*``). A run killed outright
  (SIGKILL, power loss) cannot remove them; the next run that writes into the same folder
  removes those whose process is gone and that nothing touched for :data:`STALE_AFTER_S`.

:func:`exclusive_lock` is the one lock of the project: a run directory (``patchwise
train``), a sweep folder and a feature store (``patchwise embed``) are each held by one
process at a time through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PatchwiseError, first_line

TEMP_PREFIX = ".patchwise-tmp-"
SCRATCH_PREFIX = ".patchwise-scratch-"
# Age (seconds since the last change) after which a dead process's leftovers are removed.
# The pid test alone is not enough: the folder may be shared with another machine or
# container, where that pid means nothing.
STALE_AFTER_S = 3600.0
_LEFTOVER = re.compile(r"^\.patchwise-(?:tmp|scratch)-(\d+)-[A-Za-z0-9_]+$")
_cleaned: set[str] = set()  # folders already swept by this process


# -- output checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputKind:
    """What a command writes, so that an existing output is replaced only if it is that.

    Attributes
    ----------
    what : str
        How messages name it ("a feature store").
    suffixes : tuple of str
        Lower-case endings its name must have (empty: any name).
    folder : bool
        The output is a folder (a zarr store, a run directory).
    recognise : callable, optional
        ``recognise(folder)``: whether an existing folder is one (by its metadata).
    owns : callable, optional
        ``owns(folder, name)``: whether such a folder writes the entry ``name``; a folder
        with any other entry is never replaced (someone put it there).
    """

    what: str
    suffixes: tuple[str, ...] = ()
    folder: bool = False
    recognise: Callable[[Path], bool] | None = None
    owns: Callable[[Path, str], bool] | None = None


#: A plain file output (an existing file of that name is replaced).
FILE = OutputKind("a file")


def zarr_attributes(folder: str | os.PathLike) -> dict:
    """A zarr group's attributes (``zarr.json`` of zarr v3, else ``.zattrs`` of v2), or {}.

    Read as JSON, without zarr: enough to recognise what a folder is.
    """
    folder = Path(folder)
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        attrs = data.get(key) if key and isinstance(data, dict) else data
        if isinstance(attrs, dict):
            return attrs
    return {}


def _listing(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def folder_problem(folder: str | os.PathLike, kind: OutputKind) -> str | None:
    """Why the existing folder ``folder`` may not be replaced by a ``kind`` output, or None.

    It may be replaced when it is empty, or when ``kind`` recognises it and it holds
    nothing but what such an output writes (and this module's temporaries).
    """
    folder = Path(folder)
    try:
        names = sorted(e.name for e in os.scandir(folder) if not _LEFTOVER.match(e.name))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not names:
        return None
    if kind.recognise is None or not kind.recognise(folder):
        return f"is a folder holding {_listing(names)}, not {kind.what}"
    foreign = [n for n in names if kind.owns is not None and not kind.owns(folder, n)]
    if foreign:
        return f"is {kind.what} but also holds {_listing(foreign)}, which it does not write"
    return None


def check_replaceable(path: str | os.PathLike, kind: OutputKind, *, flag: str = "--out") -> None:
    """Raise unless the existing folder ``path`` is recognisably a ``kind`` output.

    The message says what is there and to choose another name; it never suggests
    ``--overwrite`` (which would not replace it either).
    """
    problem = folder_problem(path, kind)
    if problem is not None:
        raise PatchwiseError(
            f"{problem}; it was left as it is and nothing was written",
            path=path,
            hint=f"choose another {flag}",
        )


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    kind: OutputKind = FILE,
    overwrite: bool = False,
    role: str = "the input of this command",
    flag: str = "--out",
) -> Path:
    """Refuse an output name that would destroy something; call before any work.

    Parameters
    ----------
    path : path-like
        The output the command is about to write.
    inputs : iterable of path-like
        Paths the command reads (or writes elsewhere): the output must be none of them,
        and a folder output must not contain any of them.
    kind : OutputKind
        What the command writes there: its name must end as ``kind.suffixes`` say; an
        existing folder is replaced only if ``kind`` is a folder kind that recognises it
        (:func:`folder_problem`) and ``overwrite`` is set.
    overwrite : bool
        The user asked to replace an existing output of this kind (``--overwrite``).
    role : str
        How the error names what ``path`` collides with.
    flag : str
        The option that named ``path`` (for the hint).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    PatchwiseError
        A name of the wrong kind, an existing folder that is not a replaceable output of
        this kind (or ``overwrite`` is not set), an existing non-folder where a folder is
        written, a path under a file, or one of ``inputs``.
    """
    path = Path(path)
    if kind.suffixes and not path.name.lower().endswith(kind.suffixes):
        raise PatchwiseError(
            f"this command writes {kind.what}, which is named *{kind.suffixes[0]}; "
            "nothing was written",
            path=path,
            hint=f"give {flag} a name ending in {' or '.join(kind.suffixes)}",
        )
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise PatchwiseError(
                    f"cannot be created: {parent} is a file", path=path, hint="name another folder"
                )
            break
    if path.is_dir() and not kind.folder:
        raise PatchwiseError(
            "is an existing folder, not a file name; nothing was written",
            path=path,
            hint="name a file (e.g. inside that folder)",
        )
    _check_not_an_input(path, inputs, folder=kind.folder, role=role)
    if path.is_dir():
        check_replaceable(path, kind, flag=flag)
        if not overwrite:
            raise PatchwiseError(
                f"already exists ({kind.what if any(path.iterdir()) else 'an empty folder'})",
                path=path,
                hint=f"pass --overwrite to replace it, or choose another {flag}",
            )
    elif kind.folder and (path.exists() or path.is_symlink()):
        raise PatchwiseError(
            f"exists and is a file, not {kind.what}; nothing was written",
            path=path,
            hint=f"choose another {flag}",
        )
    return path


def _check_not_an_input(
    path: Path, inputs: Iterable[str | os.PathLike | None], *, folder: bool, role: str
) -> None:
    for other in inputs:
        if other is None:
            continue
        if _same_path(path, other):
            named = "" if str(other) == str(path) else f" ({other})"
            raise PatchwiseError(
                f"would overwrite {role}{named}; nothing was written",
                path=path,
                hint="write the output to another path",
            )
        if folder and _is_inside(other, path):
            raise PatchwiseError(
                f"holds {role} ({other}); nothing was written",
                path=path,
                hint="write the output to another path",
            )


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    with contextlib.suppress(OSError):
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    return Path(a).resolve() == Path(b).resolve()


def _is_inside(inner: str | os.PathLike, outer: str | os.PathLike) -> bool:
    return Path(outer).resolve() in Path(inner).resolve().parents


# -- temporaries -----------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def clean_stale(folder: str | os.PathLike, *, max_age: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporaries of dead processes in ``folder`` (once per folder and process).

    Only names this module creates are considered (``.patchwise-tmp-<pid>-*``,
    ``.patchwise-scratch-<pid>-*``), and only when that process no longer runs on this
    machine and nothing in them changed for ``max_age`` seconds. Never raises.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    folder = Path(folder)
    key = str(folder.absolute())
    if key in _cleaned:
        return []
    _cleaned.add(key)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        path = Path(entry.path)
        try:
            if pid == os.getpid() or _pid_alive(pid) or now - _newest_mtime(path) < max_age:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def private_dir(folder: str | os.PathLike | None, prefix: str = TEMP_PREFIX) -> Path:
    """Create a fresh directory ``<prefix><pid>-<random>`` in ``folder`` (after a sweep)."""
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale(folder)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=folder))


@contextlib.contextmanager
def scratch_dir(folder: str | os.PathLike | None = None) -> Iterator[Path]:
    """A private scratch directory in ``folder`` (the system temp folder if None), removed on exit."""
    path = private_dir(folder, SCRATCH_PREFIX)
    try:
        yield path
    finally:
        _remove_tree(path)


def _remove_tree(path: Path, attempts: int = 25, wait_s: float = 0.2) -> None:
    """Remove ``path``, again while it reappears or refuses (up to ``attempts`` times).

    On Ctrl-C or SIGTERM the main thread unwinds while a dask pool that is not joined here
    (the writers' reads of the scratch store, a pyramid staged inside it) may still finish
    its in-flight chunk and write into the folder: a single ``rmtree`` then leaves it
    behind (seen once, in a clean-clone run of the SIGTERM test). Each chunk ends within a
    fraction of a second, so a few retries see the folder gone for good.
    """
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(wait_s)


# -- atomic outputs --------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike, *, suffix: str | None = None, replace: OutputKind | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``.

    Works for files and for directories (e.g. a zarr store). On error the temporary
    path is removed and ``target`` is left untouched; an ``OSError`` names ``target``
    (:func:`user_os_error`), not the temporary.

    Parameters
    ----------
    target : path-like
        Final location.
    suffix : str, optional
        Suffix of the temporary name (by default the temporary has the target's own
        name, so that writers that dispatch on the extension still see it).
    replace : OutputKind, optional
        Allow replacing an existing folder (or a non-folder by a folder) that is
        recognisably this kind of output (:func:`check_replaceable`, checked again just
        before the rename). Without it an existing folder at ``target`` is an error: it
        is never deleted.
    """
    with atomic_paths([target], suffix=suffix, replace=replace) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(
    targets: Sequence[str | os.PathLike],
    *,
    suffix: str | None = None,
    replace: OutputKind | None = None,
) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for outputs that belong together (a slide and its mask).

    Nothing is renamed into place until the block has written every output; then the
    renames follow each other directly, so an interrupt cannot leave a new slide beside an
    old mask except within those few system calls.
    """
    targets = [Path(t) for t in targets]
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            if replace is None:
                raise PatchwiseError(
                    "is an existing folder; it was left as it is and nothing was written",
                    path=target,
                    hint="name a new file",
                )
            check_replaceable(target, replace)
    tmp_dirs: list[Path] = []
    try:
        for target in targets:
            tmp_dirs.append(private_dir(target.parent))
        tmps = [
            d / (t.name if suffix is None else Path(t.name).stem + suffix)
            for d, t in zip(tmp_dirs, targets, strict=True)
        ]
        yield tmps
        for tmp in tmps:
            if not tmp.exists():
                raise FileNotFoundError(f"the writer did not create {tmp}")
        for tmp, target, tmp_dir in zip(tmps, targets, tmp_dirs, strict=True):
            _move_into_place(tmp, target, tmp_dir, replace=replace)
    except OSError as exc:
        raise user_os_error(exc, targets) from exc
    finally:
        for tmp_dir in tmp_dirs:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _move_into_place(tmp: Path, target: Path, tmp_dir: Path, *, replace: OutputKind | None) -> None:
    """Rename ``tmp`` to ``target``; an old folder (or a file a folder replaces) is moved
    into ``tmp_dir`` first and removed with it, or put back if the rename fails."""
    old_is_dir = target.is_dir() and not target.is_symlink()
    kind_changes = tmp.is_dir() and (target.exists() or target.is_symlink()) and not old_is_dir
    if not (old_is_dir or kind_changes):
        os.replace(tmp, target)  # a file over a file (or nothing): one atomic rename
        return
    if replace is None:
        raise PatchwiseError(
            "already exists and was left as it is", path=target, hint="name a new output"
        )
    if old_is_dir:  # again: someone may have put something there while this one was written
        check_replaceable(target, replace)
    old = tmp_dir / ".replaced"
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise


# -- locks -----------------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive_lock(
    lock: str | os.PathLike,
    busy: Callable[[int | None], BaseException],
    *,
    note: str = "",
) -> Iterator[None]:
    """Hold the lock file ``lock`` exclusively while the block runs, or raise at once.

    An ``flock`` on ``lock``, whose first word is the holder's pid: the kernel drops the
    lock when the process ends however it ends, so a file left by a killed process holds
    no lock and is taken over. The file is removed when the lock is released; a process
    that locked a file that was removed meanwhile tries again on the new one. Where
    ``fcntl`` is missing (Windows) the file is created exclusively; a file whose pid is
    gone is stale and taken over.

    Parameters
    ----------
    lock : path-like
        The lock file (its folder must exist).
    busy : callable
        ``busy(pid or None)``: the exception to raise when another process holds it.
    note : str
        More words after the pid (e.g. the sweep that started this process):
        :func:`lock_holder` reads them back.
    """
    lock = Path(lock)
    content = f"{os.getpid()} {note}".strip().encode()
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        with _pid_lock(lock, busy, content):
            yield
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_words(fd)
            os.close(fd)
            raise busy(owner[0] if owner else None) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous owner removed the file while we waited for it
    try:
        os.ftruncate(fd, 0)
        os.write(fd, content)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)  # unlink first: a waiter that locks the old file sees it is gone


def held_by_another(
    command: str, doing: str, path: str | os.PathLike
) -> Callable[[int | None], PatchwiseError]:
    """The ``busy`` of :func:`exclusive_lock` for a patchwise command's output.

    ``held_by_another("embed", "is writing this feature store", out)(pid)`` is the one
    line "another patchwise embed (pid N) is writing this feature store" naming ``path``.
    """

    def busy(pid: int | None) -> PatchwiseError:
        who = f" (pid {pid})" if pid else ""
        return PatchwiseError(
            f"another patchwise {command}{who} {doing}",
            path=path,
            hint="wait for it to finish, or choose another --out",
        )

    return busy


def lock_held(lock: str | os.PathLike) -> bool:
    """Whether a process holds the lock file ``lock`` now (a left-over file holds none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the pid lock is held while its pid lives
        owner = lock_holder(lock)
        return bool(owner) and pid_alive(owner[0])
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, ended but not yet reaped,
    does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # e.g. AccessDenied: it exists
        return True


def lock_holder(lock: str | os.PathLike) -> list[int]:
    """The numbers a lock file holds: the holder's pid first, then its note's (may be [])."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return []
    try:
        return _read_words(fd)
    finally:
        os.close(fd)


def _read_words(fd: int) -> list[int]:
    try:
        words = os.pread(fd, 64, 0).decode().split()
    except (OSError, UnicodeDecodeError):
        return []
    return [int(w) for w in words if w.isdigit()]


@contextlib.contextmanager
def _pid_lock(lock: Path, busy, content: bytes) -> Iterator[None]:  # pragma: no cover - Windows
    import psutil  # os.kill(pid, 0) would terminate the process on Windows

    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            owner = lock_holder(lock)
            if owner and owner[0] and psutil.pid_exists(owner[0]):
                raise busy(owner[0]) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its process is gone
    else:
        raise busy(None)
    try:
        os.write(fd, content)
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


# -- errors of the file system ---------------------------------------------------------------


# -- JSON files --------------------------------------------------------------------------------
def write_json(
    path: str | os.PathLike, data: Any, *, indent: int = 2, allow_nan: bool = False
) -> None:
    """``data`` as JSON in ``path``, atomically (a reader never sees half a file).

    NaN and infinities are refused by default (``allow_nan=False``): they are not JSON,
    and other tools reading the file would fail on them.
    """
    with atomic_path(path) as tmp:
        text = json.dumps(data, indent=indent, allow_nan=allow_nan)
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json_object(
    path: str | os.PathLike, *, what: str = "the JSON", hint: str | None = None
) -> dict:
    """The JSON object in ``path``, or one line naming the file (``cannot read WHAT (...)``).

    Parameters
    ----------
    path : path-like
        The file; missing, unreadable, not UTF-8, not JSON or not an object all raise.
    what : str
        What the file is, in the error (``"the run configuration"``).
    hint : str, optional
        What to do, in the error.
    """

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PatchwiseError(
            f"cannot read {what} ({first_line(exc)})", path=path, hint=hint
        ) from None
    if not isinstance(data, dict):
        raise PatchwiseError(
            f"holds a JSON {type(data).__name__}, not an object", path=path, hint=hint
        )
    return data


def user_os_error(exc: OSError, targets: Sequence[str | os.PathLike]) -> OSError:
    """``exc`` naming the user's output instead of a private temporary (or nothing).

    A file name inside (or of) a ``.patchwise-tmp-*`` / ``.patchwise-scratch-*`` folder
    becomes the target it was written for (the first of ``targets`` when it cannot be
    told); an error without a file name (a full disk on ``write``) gets the targets.
    ``exc`` itself is returned when it names no temporary.
    """
    targets = [Path(t) for t in targets]
    names = [_user_name(n, targets) for n in (exc.filename, exc.filename2)]
    if exc.filename is None:
        names[0] = " and ".join(str(t) for t in targets) if targets else None
    if names == [exc.filename, exc.filename2] or exc.errno is None:
        return exc
    new = OSError(exc.errno, exc.strerror or str(exc), names[0], None, names[1])
    return new


@contextlib.contextmanager
def naming(targets: Sequence[str | os.PathLike]) -> Iterator[None]:
    """Raise an ``OSError`` of the block as :func:`user_os_error` names it for ``targets``
    (scratch files written for these outputs, a full disk on a nameless ``write``)."""
    try:
        yield
    except OSError as exc:
        raise user_os_error(exc, targets) from exc


def _user_name(name, targets: list[Path]):
    """The user's path for a file name that may lie in one of this module's temporaries."""
    if name is None or not isinstance(name, str | os.PathLike):
        return name
    parts = Path(name).parts
    for i, part in enumerate(parts):
        if _LEFTOVER.match(part) or part.startswith((TEMP_PREFIX, SCRATCH_PREFIX)):
            rest = parts[i + 1 :]
            by_name = [t for t in targets if rest and t.name == rest[0]]
            target = (by_name or targets or [Path(*parts[:i]) if i else Path.cwd()])[0]
            return str(target.joinpath(*rest[1:]))
    return name
