"""The cohort manifest: which slides (and masks) form the train / val / test splits.

A CSV with columns ``image``, ``mask``, ``split`` (``train``/``val``/``test``), an
optional ``slide`` id (default: the image's file stem) and an optional ``patient`` id.
Paths are relative to the manifest. Splits are by slide, never by patch: a slide id may
appear in one split only, and a patient's slides all lie in one split (``patchwise
split`` assigns whole patients, :mod:`.cohort_split`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import PatchwiseError
from ..io.formats import slide_name

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
    patient: str | None = None  # the optional ``patient`` column


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
        Missing manifest or columns, a file that is not a UTF-8 CSV (binary, another
        encoding, repeated columns, a row with more or fewer fields than the header), a
        missing image or mask (naming the line and path), an unknown split value, a
        slide id or image in two rows, or a split of ``require_splits`` with no slide.
    """
    path = Path(path)
    if not path.is_file():
        raise PatchwiseError("manifest not found", path=path, hint="give the cohort CSV")
    rows = read_rows(path)
    if not rows:
        raise PatchwiseError("manifest has no rows", path=path, hint="list one slide per row")
    entries: list[CohortEntry] = []
    repeats = _Repeats(path)
    for line, row in rows:
        entry = _entry(path, line, row)
        repeats.check(entry, row["image"])
        entries.append(entry)
    _check_required_splits(path, entries, require_splits)
    check_patients(path, entries)
    return entries


def check_patients(path: str | os.PathLike, entries: list[CohortEntry]) -> None:
    """Refuse a patient whose slides lie in two splits (one line naming both).

    Slides of one patient share the patient's tissue, staining and scanner day: with one
    in training and another in the test split the test numbers are not a new patient's.

    Raises
    ------
    PatchwiseError
        The first patient (in manifest order) found in two splits, with its lines.
    """
    first: dict[str, CohortEntry] = {}
    for entry in entries:
        if entry.patient is None:
            continue
        seen = first.setdefault(entry.patient, entry)
        if seen.split != entry.split:
            raise PatchwiseError(
                f"patient {entry.patient!r} is in two splits: {seen.split} (line {seen.line}) "
                f"and {entry.split} (line {entry.line})",
                path=path,
                hint="keep each patient's slides in one split: 'patchwise split MANIFEST "
                "--by patient --out NEW.csv' assigns whole patients",
            )


def _entry(path: Path, line: int, row: dict[str, str]) -> CohortEntry:
    """One manifest row as an entry: split checked, files found (relative to ``path``)."""

    split = row["split"].lower()
    if split not in SPLITS:
        raise PatchwiseError(
            f"line {line}: unknown split {row['split']!r}",
            path=path,
            hint=f"split must be one of {', '.join(SPLITS)}",
        )
    image, mask = (_row_file(path, line, row, column) for column in ("image", "mask"))
    slide = row.get("slide") or slide_name(image)
    return CohortEntry(image, mask, split, slide, line, row.get("patient") or None)


def _row_file(path: Path, line: int, row: dict[str, str], column: str) -> Path:
    """The absolute path in ``row[column]``, which must name an existing file or store."""
    if not row[column]:
        raise PatchwiseError(f"line {line}: empty {column}", path=path)
    file = (path.parent / row[column]).resolve()
    if not file.exists():
        raise PatchwiseError(
            f"line {line}: {column} {row[column]!r} not found (looked for {file})",
            path=path,
            hint="paths are relative to the manifest",
        )
    return file


class _Repeats:
    """Refuses a slide id or an image listed twice, naming both lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.slides: dict[str, int] = {}
        self.images: dict[Path, int] = {}

    def check(self, entry: CohortEntry, image_text: str) -> None:
        """Record ``entry``; ``image_text`` is the image as the manifest spells it."""
        line = entry.line
        if entry.slide in self.slides:
            raise PatchwiseError(
                f"line {line}: slide {entry.slide!r} already listed on line "
                f"{self.slides[entry.slide]}",
                path=self.path,
                hint="each slide belongs to exactly one split (split by slide, never by patch)",
            )
        self.slides[entry.slide] = line
        if entry.image in self.images:
            # Under two slide ids the same pixels would be counted twice, or leak from
            # the training split into the test split.
            raise PatchwiseError(
                f"line {line}: image {image_text!r} already listed on line "
                f"{self.images[entry.image]}",
                path=self.path,
                hint="list each slide once",
            )
        self.images[entry.image] = line


def _check_required_splits(
    path: Path, entries: list[CohortEntry], require_splits: tuple[str, ...]
) -> None:
    """Refuse a manifest without a slide in one of ``require_splits``."""
    names = {"train": "training", "val": "validation", "test": "test"}
    for needed in require_splits:
        what = names[needed]
        if not any(e.split == needed for e in entries):
            raise PatchwiseError(
                f"no {what} slides (no row with split={needed})",
                path=path,
                hint="model selection needs train and val slides; split by slide",
            )


# Signatures of files that are often given by mistake where the manifest belongs.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"II+\x00", "a BigTIFF image"),
    (b"MM\x00+", "a BigTIFF image"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PAR1", "a parquet table"),
    (b"PK\x03\x04", "a zip archive (an Excel workbook?)"),
    (b"\x1f\x8b", "a gzip file"),
)
_SNIFF_BYTES = 8192


def read_rows(
    path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS
) -> list[tuple[int, dict[str, str]]]:
    """``(line number, {column: value})`` of every non-empty row, values stripped.

    Every way a file can fail to be a manifest CSV is a :class:`PatchwiseError` naming
    the file: a binary file (an image given by mistake), text that is not UTF-8, a
    header without the required or with repeated columns, a row with more or fewer
    fields than the header.
    """
    hint = "the manifest is a CSV with columns image, mask, split[, slide, patient]"
    data = path.read_bytes()
    head = data[:_SNIFF_BYTES]
    kind = next((name for magic, name in _BINARY_SIGNATURES if head.startswith(magic)), None)
    if kind is not None or b"\x00" in head:
        raise PatchwiseError(
            f"is {kind or 'a binary file'}, not a CSV manifest", path=path, hint=hint
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PatchwiseError(
            f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})",
            path=path,
            hint="save the manifest as UTF-8 (in Excel: CSV UTF-8)",
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            found = ", ".join(c for c in header if c) or "none"
            raise PatchwiseError(
                f"manifest lacks column(s) {', '.join(missing)} (found {found})",
                path=path,
                hint=hint,
            )
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise PatchwiseError(
                f"line 1: column(s) {', '.join(map(repr, repeated))} appear more than once",
                path=path,
                hint=hint,
            )
        rows = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # blank lines, as csv.DictReader skips them
            if len(fields) != len(header):
                raise PatchwiseError(
                    f"line {reader.line_num}: {len(fields)} fields, but the header has "
                    f"{len(header)} ({', '.join(header)})",
                    path=path,
                    hint="quote values that contain commas; one slide per line",
                )
            rows.append(
                (reader.line_num, {c: v.strip() for c, v in zip(header, fields, strict=True)})
            )
    except csv.Error as exc:
        raise PatchwiseError(
            f"line {reader.line_num}: not valid CSV ({exc})", path=path, hint=hint
        ) from None
    return rows
