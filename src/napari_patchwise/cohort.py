"""The cohort manifest: which slides (and masks) form the train / val / test splits.

A CSV with columns ``image``, ``mask``, ``split`` (``train``/``val``/``test``) and an
optional ``slide`` id (default: the image's file stem). Paths are relative to the
manifest. Splits are by slide, never by patch: a slide id may appear in one split only.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import PatchwiseError

SPLITS: tuple[str, ...] = ("train", "val", "test")
REQUIRED_COLUMNS: tuple[str, ...] = ("image", "mask", "split")


@dataclass(frozen=True)
class CohortEntry:
    """One slide of the cohort (one manifest row)."""

    image: Path
    mask: Path
    split: str
    slide: str
    line: int  # line number in the manifest, for error messages


def read_manifest(
    path: str | os.PathLike, *, require_splits: tuple[str, ...] = ("train", "val")
) -> list[CohortEntry]:
    """Parse and validate a cohort manifest.

    Parameters
    ----------
    path : path-like
        The CSV file.
    require_splits : tuple of str
        Splits that must have at least one slide: training needs ``train`` and ``val``
        (model selection); patch statistics of, say, a test cohort need none.

    Returns
    -------
    list of CohortEntry
        One per row, with absolute paths.

    Raises
    ------
    PatchwiseError
        Missing manifest or columns, a missing image or mask (naming the line and path),
        an unknown split value, a slide id in two rows, or a split of ``require_splits``
        with no slide.
    """
    from .io.reader import slide_name

    path = Path(path)
    if not path.is_file():
        raise PatchwiseError("manifest not found", path=path, hint="give the cohort CSV")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise PatchwiseError(
                f"manifest lacks column(s) {', '.join(missing)} (found {', '.join(columns) or 'none'})",
                path=path,
                hint="the manifest is a CSV with columns image, mask, split[, slide]",
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise PatchwiseError("manifest has no rows", path=path, hint="list one slide per row")

    entries: list[CohortEntry] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        line = i + 2  # the header is line 1
        split = row["split"].lower()
        if split not in SPLITS:
            raise PatchwiseError(
                f"line {line}: unknown split {row['split']!r}",
                path=path,
                hint=f"split must be one of {', '.join(SPLITS)}",
            )
        files = {}
        for column in ("image", "mask"):
            if not row[column]:
                raise PatchwiseError(f"line {line}: empty {column}", path=path)
            file = (path.parent / row[column]).resolve()
            if not file.exists():
                raise PatchwiseError(
                    f"line {line}: {column} {row[column]!r} not found (looked for {file})",
                    path=path,
                    hint="paths are relative to the manifest",
                )
            files[column] = file
        slide = row.get("slide") or slide_name(files["image"])
        if slide in seen:
            raise PatchwiseError(
                f"line {line}: slide {slide!r} already listed on line {seen[slide]}",
                path=path,
                hint="each slide belongs to exactly one split (split by slide, never by patch)",
            )
        seen[slide] = line
        entries.append(CohortEntry(files["image"], files["mask"], split, slide, line))

    names = {"train": "training", "val": "validation", "test": "test"}
    for needed in require_splits:
        what = names[needed]
        if not any(e.split == needed for e in entries):
            raise PatchwiseError(
                f"no {what} slides (no row with split={needed})",
                path=path,
                hint="model selection needs train and val slides; split by slide",
            )
    return entries
