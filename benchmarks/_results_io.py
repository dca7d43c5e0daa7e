"""Where a benchmark's published figures go: files on disk, written atomically.

Every figure that README.md or docs/ quotes from a benchmark must be in a committed file
under ``docs/results/<benchmark>/`` (``tests/package/test_results_on_file.py`` checks README's
results tables against them). A benchmark calls :func:`write_results` with its tables
(Markdown, CSV, ...) and the folder; beside them goes ``meta.json``: the command line, the
date, the git commit (and whether the work tree had changes) and the load average, so a
reader can tell how and when the numbers were made.

Quick runs (``make bench``) never write into ``docs/results/``: :func:`results_dir` sends
them to ``benchmarks/_results/<name>_quick/`` (git-ignored).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "results"
SCRATCH = ROOT / "benchmarks" / "_results"


def results_dir(name: str, *, quick: bool, given: str | None = None) -> Path:
    """The folder a benchmark's tables go to.

    ``given`` (a ``--results`` flag) wins; otherwise a full run publishes into
    ``docs/results/<name>/`` and a quick run writes into ``benchmarks/_results/<name>_quick/``.
    A quick run pointed into ``docs/results/`` is refused: quick figures are never published.
    """
    folder = Path(given) if given else (SCRATCH / f"{name}_quick" if quick else PUBLISHED / name)
    if quick and _inside(folder, PUBLISHED):
        raise SystemExit(
            f"{folder}: a --quick run never writes into docs/results/ — give another --results"
        )
    return folder


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def run_meta(extra: dict | None = None) -> dict:
    """Command line, UTC date, git commit (and dirty flag) and load average of this run."""
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    meta.update(extra or {})
    return meta


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def write_results(
    folder: Path, files: dict[str, str], meta: dict | None = None, meta_name: str = "meta.json"
) -> Path:
    """Write ``files`` (name -> text) and ``meta_name`` into ``folder``, each atomically.

    Each file is written to a temporary beside it and renamed into place, so a reader never
    sees half a table; ``meta.json`` is written last (see :func:`run_meta`).
    """
    from napari_patchwise._atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        with atomic_path(folder / name) as tmp:
            Path(tmp).write_text(text)
    extra = {"files": sorted(files), **(meta or {})}
    with atomic_path(folder / meta_name) as tmp:
        Path(tmp).write_text(json.dumps(run_meta(extra), indent=2) + "\n")
    return folder
