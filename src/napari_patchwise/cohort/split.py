"""Patient-level (or slide-level) train / val / test splits of a cohort manifest.

``patchwise split cohort.csv --by patient --fractions 0.7 0.15 0.15 --seed 0 --out
split.csv`` writes the manifest with its ``split`` column filled in so that every
patient's slides land in one split (:func:`assign_splits` does the assignment,
:func:`split_manifest` reads and writes the files). Slides of one patient share tissue,
staining and scanner: split by slide, a test slide's patient may have been seen in
training, and the test numbers overstate how the model does on a new patient.

The assignment, for a given seed, is a pure function of the units (patients or slides)
and their slide counts:

1. the units are shuffled with ``numpy.random.default_rng(seed)``, then ordered by slide
   count, largest first (stable: equal counts keep the shuffled order, so the seed
   decides among them);
2. each unit goes to the split whose slide count is furthest below its target
   (``fraction x slides``; ties to the earlier split: train, val, test);
3. a split with a positive fraction left empty receives the smallest unit of the split
   with the most units, where another unit remains there (non-empty where possible);
4. single units move to another split while that brings the slide counts closer to the
   targets (sum of absolute differences) without emptying a split.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import PatchwiseError
from ..io.formats import slide_name
from .manifest import SPLITS, read_rows

#: What ``--by`` may name: one unit per patient (the ``patient`` column) or per slide.
SPLIT_BY: tuple[str, ...] = ("patient", "slide")
#: The paper's protocol shares (train, val, test).
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """The three shares of train, val and test: finite, >= 0, summing to 1, train and
    val positive (training selects on val).

    Raises
    ------
    PatchwiseError
        Any other list.
    """
    values = tuple(float(f) for f in fractions)
    hint = "e.g. --fractions 0.7 0.15 0.15 (train, val, test)"
    if len(values) != len(SPLITS):
        raise PatchwiseError(
            f"--fractions takes {len(SPLITS)} numbers, got {len(values)}", hint=hint
        )
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise PatchwiseError(f"--fractions must be finite and >= 0, got {values}", hint=hint)
    if abs(sum(values) - 1.0) > 1e-6:
        raise PatchwiseError(f"--fractions must sum to 1, got {sum(values):g}", hint=hint)
    if not (values[0] > 0 and values[1] > 0):
        raise PatchwiseError(
            "--fractions: train and val need a positive share (training selects on val)",
            hint=hint,
        )
    return values


def assign_splits(
    sizes: Mapping[str, int], fractions: Sequence[float], seed: int
) -> dict[str, str]:
    """Whole units to splits, slide counts as close to ``fractions`` as the units allow.

    Parameters
    ----------
    sizes : mapping
        Unit id (a patient, or a slide) -> its number of slides (>= 1).
    fractions : sequence of 3 floats
        Shares of train, val, test (:func:`check_fractions`).
    seed : int
        Decides the order of the units (the module docstring gives the rule).

    Returns
    -------
    dict
        Unit id -> ``"train"``, ``"val"`` or ``"test"``, in the order of ``sizes``.
    """
    fractions = check_fractions(fractions)
    names = list(sizes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda unit: -int(sizes[unit]))  # stable: ties keep the seed's order
    targets = np.asarray(fractions) * sum(int(sizes[u]) for u in names)
    counts = np.zeros(len(SPLITS))
    where: dict[str, int] = {}
    for unit in order:
        s = int(np.argmax(targets - counts))  # first of the largest deficits
        where[unit] = s
        counts[s] += sizes[unit]
    _fill_empty(where, sizes, fractions)
    _improve(where, sizes, targets)
    return {unit: SPLITS[where[unit]] for unit in names}


def _members(where: Mapping[str, int], s: int) -> list[str]:
    return [u for u, split in where.items() if split == s]


def _fill_empty(where: dict[str, int], sizes: Mapping[str, int], fractions) -> None:
    """Give each empty split of positive share the smallest unit of the fullest split."""
    for s, share in enumerate(fractions):
        if share <= 0 or _members(where, s):
            continue
        donors = [d for d in range(len(SPLITS)) if len(_members(where, d)) > 1]
        if not donors:
            return  # fewer units than splits: some split stays empty
        donor = max(donors, key=lambda d: (len(_members(where, d)), -d))
        unit = min(
            _members(where, donor), key=lambda u: (sizes[u], _members(where, donor).index(u))
        )
        where[unit] = s


def _improve(where: dict[str, int], sizes: Mapping[str, int], targets: np.ndarray) -> None:
    """Move single units while that lowers ``sum |count - target|`` and empties no split."""
    for _ in range(len(where) * len(SPLITS)):  # each move lowers the error: bounded anyway
        counts = np.zeros(len(SPLITS))
        for unit, s in where.items():
            counts[s] += sizes[unit]
        error = np.abs(counts - targets).sum()
        best: tuple[float, str, int] | None = None
        for unit, s in where.items():
            if len(_members(where, s)) == 1:
                continue  # would empty its split
            for t in range(len(SPLITS)):
                if t == s or targets[t] <= 0:
                    continue
                moved = counts.copy()
                moved[s] -= sizes[unit]
                moved[t] += sizes[unit]
                gain = error - np.abs(moved - targets).sum()
                if gain > 1e-9 and (best is None or gain > best[0]):
                    best = (gain, unit, t)
        if best is None:
            return
        where[best[1]] = best[2]


def manifest_units(
    path: str | os.PathLike, by: str
) -> tuple[list[tuple[int, dict[str, str]]], dict[str, int], list[str]]:
    """``(rows, unit sizes, unit of each row)`` of a manifest split ``by`` patient or slide.

    Only ``image`` and ``mask`` are required (a ``split`` column, if any, is replaced);
    ``--by patient`` needs a ``patient`` value on every row.

    Raises
    ------
    PatchwiseError
        An unreadable manifest (:func:`cohort.read_manifest`'s rules), an unknown ``by``,
        a missing ``patient`` column or value, a slide listed twice.
    """

    path = Path(path)
    if by not in SPLIT_BY:
        raise PatchwiseError(f"--by {by!r}: split by {' or '.join(SPLIT_BY)}")
    if not path.is_file():
        raise PatchwiseError("manifest not found", path=path, hint="give the cohort CSV")
    rows = read_rows(path, required=("image", "mask", *(("patient",) if by == "patient" else ())))
    if not rows:
        raise PatchwiseError("manifest has no rows", path=path, hint="list one slide per row")
    units: list[str] = []
    slides: dict[str, int] = {}
    for line, row in rows:
        slide = row.get("slide") or slide_name((path.parent / row["image"]).resolve())
        if slide in slides:
            raise PatchwiseError(
                f"line {line}: slide {slide!r} already listed on line {slides[slide]}",
                path=path,
                hint="list each slide once",
            )
        slides[slide] = line
        if by == "patient" and not row["patient"]:
            raise PatchwiseError(
                f"line {line}: no patient for slide {slide!r}",
                path=path,
                hint="give every slide its patient id (or split --by slide)",
            )
        units.append(row["patient"] if by == "patient" else slide)
    sizes: dict[str, int] = {}
    for unit in units:
        sizes[unit] = sizes.get(unit, 0) + 1
    return rows, sizes, units


def split_manifest(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    by: str = "patient",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``path``'s manifest to ``out`` with its ``split`` column assigned (atomically).

    Every column is kept (``split`` added as the last column when missing, replaced
    otherwise); relative image and mask paths are rewritten relative to ``out``'s folder.

    Returns
    -------
    dict
        ``{"slides": {split: n}, "units": {split: n}, "by": by}``: what went where.
    """

    fractions = check_fractions(fractions)
    rows, sizes, units = manifest_units(path, by)
    assignment = assign_splits(sizes, fractions, seed)
    source, target = Path(path).resolve().parent, Path(out).resolve().parent
    header = list(rows[0][1])
    header += [] if "split" in header else ["split"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for (_, row), unit in zip(rows, units, strict=True):
        row = dict(row, split=assignment[unit])
        for column in ("image", "mask"):
            if not os.path.isabs(row[column]) and source != target:
                row[column] = os.path.relpath(source / row[column], target)
        writer.writerow(row)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(buffer.getvalue(), encoding="utf-8")
    summary: dict[str, Any] = {"by": by, "slides": {}, "units": {}}
    for split in SPLITS:
        summary["units"][split] = sum(1 for s in assignment.values() if s == split)
        summary["slides"][split] = sum(1 for u in units if assignment[u] == split)
    return summary
