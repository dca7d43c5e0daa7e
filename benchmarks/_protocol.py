"""The measurement protocol every timing benchmark follows (docs/benchmarks.md, "Protocol").

A timing figure means something only next to its baseline, measured under the same
conditions. So every comparison here:

* runs its cases (readers, commands, the floor) **interleaved in one process**, in an
  order that **rotates between repeats** (``a b c``, ``b c a``, ``c a b``, ...): a load
  that drifts during the run, a cache warmed by whoever ran first, hit every case alike;
* repeats each case at least :data:`MIN_REPEATS` times and reports the **min and median**
  (the min is the closest to the machine's true cost, the median says how typical it is);
* records the machine's 1/5/15-minute **load average** at the start and at the end, its
  CPU count and model, and the versions of the libraries involved; and
* **refuses to write a figure into docs/** when the 1-minute load at start was above
  :data:`LOAD_LIMIT_PER_CORE` per core, unless told ``--allow-loaded``, in which case every
  table it writes is labelled "loaded" (in its first line and in its meta file).

Quick runs (``--quick``, ``make bench``) write into ``benchmarks/_results/<name>_quick/``
(``_results_io.results_dir``) and are never refused: they check that a benchmark works,
they publish nothing.

A benchmark uses it as::

    parser = argparse.ArgumentParser(...)
    add_arguments(parser)  # --repeats, --results, --allow-loaded
    args = parser.parse_args()
    protocol = Protocol.from_args("bench_x", args)  # refuses here, before any work
    records = protocol.interleave({"floor": floor, "ours": ours})
    protocol.write({"x.md": table(summarize(records))}, {"sizes": ...})
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from _results_io import ROOT, results_dir, write_results

MIN_REPEATS = 5
LOAD_LIMIT_PER_CORE = 0.5
DOCS = ROOT / "docs"
LOADED_LABEL = "loaded"
# Libraries whose versions go into every results file (those installed).
VERSIONED = (
    "napari-patchwise", "numpy", "dask", "zarr", "tifffile", "imagecodecs", "openslide-python",
    "openslide-bin", "tiffslide", "napari", "napari-ome-zarr", "torch", "scikit-image",
)  # fmt: skip


def rotation(names: Sequence[str], repeat: int) -> list[str]:
    """The order of ``names`` in repeat ``repeat``: shifted left by ``repeat`` places."""
    if not names:
        return []
    shift = repeat % len(names)
    return [*names[shift:], *names[:shift]]


def interleave(
    cases: Mapping[str, Callable[[], Mapping[str, float] | None]],
    repeats: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[int, str], None] | None = None,
) -> dict[str, list[dict]]:
    """Run every case once per repeat, in :func:`rotation` order; one record per call.

    Each record holds ``wall_s`` (the call's wall time) and what the case returned if that
    is a mapping of named measures (e.g. a per-region median or a first-frame time
    measured inside a child process); other return values are dropped.

    Returns
    -------
    dict
        Case name -> its records, in repeat order.
    """
    names = list(cases)
    records: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in rotation(names, repeat):
            if progress is not None:
                progress(repeat, name)
            start = clock()
            measured = cases[name]()
            record = {"wall_s": clock() - start, "repeat": repeat}
            if isinstance(measured, Mapping):  # anything else a case returns is dropped
                record.update(measured)
            records[name].append(record)
    return records


def min_median(values: Iterable[float]) -> tuple[float, float]:
    """``(min, median)`` of ``values`` (the median of an even count is the mean of the two
    middle values)."""
    values = list(values)
    if not values:
        raise ValueError("no values")
    return min(values), statistics.median(values)


def summarize(records: Mapping[str, list[dict]], key: str = "wall_s") -> dict[str, tuple]:
    """Case name -> ``(min, median)`` of measure ``key`` over its repeats (None if absent)."""
    out = {}
    for name, recs in records.items():
        values = [r[key] for r in recs if r.get(key) is not None]
        out[name] = min_median(values) if values else None
    return out


def machine() -> dict:
    """CPU count, CPU model, OS and Python of this machine."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions(packages: Iterable[str] = VERSIONED) -> dict[str, str]:
    """Installed versions of ``packages`` (those not installed left out)."""
    found = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded to 0.01."""
    return [round(x, 2) for x in os.getloadavg()]


def add_arguments(parser: argparse.ArgumentParser, *, repeats: int | None = None) -> None:
    """The protocol's flags: ``--repeats``, ``--results``, ``--allow-loaded``."""
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"interleaved repeats of every case (default {MIN_REPEATS}; fewer are never "
        "written into docs/)",
    )
    parser.add_argument(
        "--results", help="where the tables go (default docs/results/<benchmark>/; --quick: "
        "benchmarks/_results/<benchmark>_quick/)"
    )  # fmt: skip
    parser.add_argument(
        "--allow-loaded",
        action="store_true",
        help=f"write into docs/ even when the load at start is above {LOAD_LIMIT_PER_CORE} "
        "per core; the tables are then labelled 'loaded'",
    )


class Protocol:
    """One benchmark run: its results folder, its load at start, its repeats, its writes.

    Parameters
    ----------
    name : str
        The benchmark (its folder under ``docs/results/``).
    quick : bool
        A quick run: results go to ``benchmarks/_results/<name>_quick/``.
    results : str, optional
        Another folder (``--results``).
    repeats : int, optional
        Repeats of every case (default :data:`MIN_REPEATS`; 2 for a quick run).
    allow_loaded : bool
        Publish into docs/ even from a loaded machine, labelled "loaded".
    """

    def __init__(
        self,
        name: str,
        *,
        quick: bool,
        results: str | None = None,
        repeats: int | None = None,
        allow_loaded: bool = False,
    ) -> None:
        self.name = name
        self.quick = quick
        self.folder = results_dir(name, quick=quick, given=results)
        self.repeats = repeats if repeats is not None else (2 if quick else MIN_REPEATS)
        self.allow_loaded = allow_loaded
        self.cpu_count = os.cpu_count() or 1
        self.load_start = load_average()
        self.started = time.perf_counter()
        self.check()

    @classmethod
    def from_args(cls, name: str, args: argparse.Namespace) -> Protocol:
        """From the flags of :func:`add_arguments` and ``--quick``."""
        return cls(
            name,
            quick=bool(getattr(args, "quick", False)),
            results=getattr(args, "results", None),
            repeats=getattr(args, "repeats", None),
            allow_loaded=bool(getattr(args, "allow_loaded", False)),
        )

    @property
    def publishing(self) -> bool:
        """Whether the results folder is inside docs/."""
        return _inside(self.folder, DOCS)

    @property
    def load_per_core(self) -> float:
        """The 1-minute load average at start divided by the CPU count."""
        return self.load_start[0] / self.cpu_count

    @property
    def loaded(self) -> bool:
        """Whether the load at start was above :data:`LOAD_LIMIT_PER_CORE` per core."""
        return self.load_per_core > LOAD_LIMIT_PER_CORE

    def check(self) -> None:
        """Refuse (``SystemExit``, one line) a run whose figures must not go into docs/."""
        if not self.publishing:
            return
        if self.repeats < MIN_REPEATS:
            raise SystemExit(
                f"{self.folder}: {self.repeats} repeats — figures in docs/ need at least "
                f"{MIN_REPEATS} (--repeats), or give another --results"
            )
        if self.loaded and not self.allow_loaded:
            raise SystemExit(
                f"{self.folder}: load average {self.load_start[0]} on {self.cpu_count} cores "
                f"at start ({self.load_per_core:.2f} per core > {LOAD_LIMIT_PER_CORE}) — rerun "
                "on a quiet machine, give another --results, or pass --allow-loaded to "
                "publish them labelled 'loaded'"
            )

    def interleave(
        self, cases: Mapping[str, Callable[[], Mapping[str, float] | None]], **kwargs
    ) -> dict[str, list[dict]]:
        """:func:`interleave` with this run's repeats."""
        return interleave(cases, self.repeats, **kwargs)

    def label(self) -> str:
        """One line on the conditions, first line of every Markdown table written."""
        load = "/".join(f"{x:g}" for x in self.load_start)
        state = "LOADED machine" if self.loaded else "quiet machine"
        return (
            f"<!-- {state}: load average {load} (1/5/15 min) at start on "
            f"{self.cpu_count} cores; {self.repeats} interleaved repeats, min / median -->"
        )

    def meta(self, extra: Mapping | None = None) -> dict:
        """What goes beside the tables: conditions, machine, versions (and ``extra``)."""
        return {
            "benchmark": self.name,
            "quick": self.quick,
            "repeats": self.repeats,
            "order": "interleaved, rotating between repeats",
            "conditions": LOADED_LABEL if self.loaded else "quiet",
            "load_average_start": self.load_start,
            "load_average_end": load_average(),
            "load_limit_per_core": LOAD_LIMIT_PER_CORE,
            "elapsed_s": round(time.perf_counter() - self.started, 1),
            "machine": machine(),
            "versions": versions(),
            **(extra or {}),
        }

    def write(
        self, files: Mapping[str, str], extra: Mapping | None = None, meta_name: str = "meta.json"
    ) -> Path:
        """Write ``files`` and their meta file atomically into the results folder.

        Markdown files get :meth:`label` as their first line. Checked again here: a loaded
        run is refused docs/ unless ``allow_loaded``.
        """
        self.check()
        labelled = {
            name: (f"{self.label()}\n{text}" if name.endswith(".md") else text)
            for name, text in files.items()
        }
        folder = write_results(self.folder, labelled, self.meta(extra), meta_name=meta_name)
        print(f"results: {folder}", file=sys.stderr)
        return folder


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table (``—`` for None)."""
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_pair(pair: tuple | None, scale: float = 1.0, digits: int = 3) -> str:
    """``min / median`` of a :func:`min_median` pair, times ``scale``."""
    if pair is None:
        return "—"
    return f"{pair[0] * scale:.{digits}f} / {pair[1] * scale:.{digits}f}"
