"""Patchwise session files: what the dock showed, to reopen it later (docs/sessions.md).

A session is a small JSON file (``*.patchwise-session.json``) naming the slides, their
masks and tables, the dock's settings per slide (grid, tissue, attribute, tau, decision
threshold), the loaded predictions, the run comparison, the overlay shown, the layers'
visibility and the camera. It holds no pixels and no numbers the dock computes: reopening
reads the files again and recomputes, so the metrics shown are the same.

Paths are stored relative to the session file's folder when they can be (a project
folder moved as a whole still opens), absolute otherwise. :func:`read_session` resolves
them against the file's folder and checks, before anything is opened, that every file
named is there: a bad session is one :class:`~napari_patchwise.errors.PatchwiseError`
line naming the session file.

This module is plain data and JSON (no Qt, no napari); ``_napari/session_box.py`` turns
a dock into a :class:`Session` and back.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import write_json
from ..errors import PatchwiseError

__all__ = [
    "FORMAT",
    "SESSION_SUFFIX",
    "VERSION",
    "Comparison",
    "LayerView",
    "Session",
    "SessionSlide",
    "read_session",
    "session_dict",
    "session_from_dict",
    "write_session",
]

FORMAT = "patchwise-session"
VERSION = 1
SESSION_SUFFIX = ".patchwise-session.json"
SESSION_HINT = "save the session again from the Patchwise dock"

#: The per-slide settings a session stores, and the type each must have (bool before
#: int: JSON ``true`` is not a patch size).
SETTING_TYPES: dict[str, type] = {
    "patch_size": int,
    "stride": int,
    "keep_edges": bool,
    "tissue": str,
    "tissue_threshold": float,
    "background": str,
    "attribute": str,
    "tau": float,
    "threshold": float,
}


@dataclass
class SessionSlide:
    """One slide of a session.

    Attributes
    ----------
    image : Path
        The slide file (or folder: OME-Zarr, DICOM WSI).
    mask : Path or None
        A mask file opened beside the slide (None: the slide's own mask, or none).
    table : Path or None
        A complete patch table shown instead of computing the grid.
    computed : bool
        Whether the patch grid was computed in the dock (from ``settings``).
    predictions : Path or None
        The predictions attached: a prediction table, or a run folder / checkpoint the
        dock predicted the slide with.
    settings : dict
        The dock's settings of the slide (keys of :data:`SETTING_TYPES`).
    reviewed : list of (row, col) or None
        Patches marked reviewed in the errors list; None when the session has no entry
        (files written before the list had the flag).
    """

    image: Path
    mask: Path | None = None
    table: Path | None = None
    computed: bool = False
    predictions: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    reviewed: list[tuple[int, int]] | None = None


@dataclass
class Comparison:
    """Two runs compared on slide ``slide`` (an index into :attr:`Session.slides`)."""

    a: Path
    b: Path
    names: tuple[str, str] = ("", "")
    slide: int = 0


@dataclass
class LayerView:
    """How one layer was shown (matched by name when the session reopens)."""

    name: str
    visible: bool = True
    opacity: float = 1.0


@dataclass
class Session:
    """What the Patchwise dock showed (see the module docstring)."""

    slides: list[SessionSlide]
    current: int = 0
    mask_map: str | None = None
    overlay: str | None = None
    comparison: Comparison | None = None
    layers: list[LayerView] = field(default_factory=list)
    camera: dict[str, Any] | None = None  # {"center": [y, x], "zoom": z} in world units


# -- writing ---------------------------------------------------------------------------------
def _stored(path: Path | None, folder: Path) -> str | None:
    """``path`` relative to ``folder`` when possible (same drive), else absolute."""
    if path is None:
        return None
    path = Path(os.path.abspath(path))
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return str(path)


def session_dict(session: Session, folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON form of ``session``, its paths relative to ``folder`` where possible."""
    folder = Path(os.path.abspath(folder))
    slides = []
    for s in session.slides:
        entry: dict[str, Any] = {
            "image": _stored(s.image, folder),
            "mask": _stored(s.mask, folder),
            "table": _stored(s.table, folder),
            "computed": bool(s.computed),
            "predictions": _stored(s.predictions, folder),
            "settings": {k: s.settings[k] for k in SETTING_TYPES if k in s.settings},
        }
        if s.reviewed is not None:
            entry["reviewed"] = [[int(r), int(c)] for r, c in s.reviewed]
        slides.append(entry)
    comparison = session.comparison
    return {
        "format": FORMAT,
        "version": VERSION,
        "slides": slides,
        "current": int(session.current),
        "mask_map": session.mask_map,
        "overlay": session.overlay,
        "comparison": None
        if comparison is None
        else {
            "a": _stored(comparison.a, folder),
            "b": _stored(comparison.b, folder),
            "names": list(comparison.names),
            "slide": int(comparison.slide),
        },
        "layers": [
            {"name": v.name, "visible": bool(v.visible), "opacity": float(v.opacity)}
            for v in session.layers
        ],
        "camera": session.camera,
    }


def write_session(session: Session, path: str | os.PathLike) -> Path:
    """Write ``session`` to ``path`` (atomically: a temporary file, then a rename).

    Returns the path written. A name not ending in ``.json`` gets
    :data:`SESSION_SUFFIX` appended.
    """
    path = Path(path)
    if not path.name.endswith(".json"):
        path = path.with_name(path.name + SESSION_SUFFIX)
    write_json(path, session_dict(session, path.parent), allow_nan=True)
    return path


# -- reading ---------------------------------------------------------------------------------
class _Reader:
    """Checks one session file's JSON, each problem one line naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = Path(os.path.abspath(path)).parent

    def fail(self, what: str, hint: str = SESSION_HINT) -> PatchwiseError:
        return PatchwiseError(what, path=self.path, hint=hint)

    def get(self, data: dict, key: str, kind, where: str, *, optional: bool = True):
        value = data.get(key)
        if value is None:
            if optional:
                return None
            raise self.fail(f"{where} has no '{key}'")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.fail(f"{where}: '{key}' is {value!r}, not {_kind_name(kind)}")
        if kind is float and not math.isfinite(value):
            raise self.fail(f"{where}: '{key}' is {value!r}, not a finite number")
        return value

    def file(self, data: dict, key: str, where: str, *, optional: bool = True) -> Path | None:
        text = self.get(data, key, str, where, optional=optional)
        if text is None:
            return None
        resolved = Path(text) if Path(text).is_absolute() else self.folder / text
        resolved = Path(os.path.normpath(resolved))
        if not resolved.exists():
            raise PatchwiseError(
                f"{where}: {key} {resolved} does not exist",
                path=self.path,
                hint="put the file back, or open it by hand and save the session again",
            )
        return resolved

    def slide(self, data, i: int) -> SessionSlide:
        where = f"slide {i + 1}"
        if not isinstance(data, dict):
            raise self.fail(f"{where} is not an object")
        settings = self.get(data, "settings", dict, where) or {}
        for key, kind in SETTING_TYPES.items():
            self.get(settings, key, kind, f"{where} settings")
        reviewed = self.get(data, "reviewed", list, where)
        if reviewed is not None:
            pairs = [p for p in reviewed if isinstance(p, list) and len(p) == 2]
            if len(pairs) != len(reviewed) or not all(
                isinstance(v, int) and not isinstance(v, bool) for p in pairs for v in p
            ):
                raise self.fail(f"{where}: 'reviewed' must list [row, col] pairs")
            reviewed = [(int(r), int(c)) for r, c in pairs]
        return SessionSlide(
            image=self.file(data, "image", where, optional=False),
            mask=self.file(data, "mask", where),
            table=self.file(data, "table", where),
            computed=bool(self.get(data, "computed", bool, where)),
            predictions=self.file(data, "predictions", where),
            settings={k: settings[k] for k in SETTING_TYPES if settings.get(k) is not None},
            reviewed=reviewed,
        )

    def comparison(self, data, n_slides: int) -> Comparison | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise self.fail("'comparison' is not an object")
        names = self.get(data, "names", list, "comparison") or ["", ""]
        if len(names) != 2 or not all(isinstance(n, str) for n in names):
            raise self.fail("comparison: 'names' must be two strings")
        slide = self.get(data, "slide", int, "comparison") or 0
        if not 0 <= slide < n_slides:
            raise self.fail(f"comparison: 'slide' is {slide}, not one of the session's slides")
        return Comparison(
            a=self.file(data, "a", "comparison", optional=False),
            b=self.file(data, "b", "comparison", optional=False),
            names=(names[0], names[1]),
            slide=slide,
        )

    def layers(self, data) -> list[LayerView]:
        views = []
        for i, entry in enumerate(data or []):
            if not isinstance(entry, dict):
                raise self.fail(f"layer {i + 1} is not an object")
            where = f"layer {i + 1}"
            opacity = self.get(entry, "opacity", float, where)
            views.append(
                LayerView(
                    name=self.get(entry, "name", str, where, optional=False),
                    visible=bool(self.get(entry, "visible", bool, where) is not False),
                    opacity=1.0 if opacity is None else opacity,
                )
            )
        return views


def _kind_name(kind) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(
        kind, "a list" if kind is list else "an object"
    )


def session_from_dict(data: Any, path: str | os.PathLike) -> Session:
    """Check a session's JSON (read from ``path``) and resolve its paths.

    Raises
    ------
    PatchwiseError
        Not a Patchwise session, a version this Patchwise does not read, a value of the
        wrong type, or a file it names is missing (the message names ``path``).
    """
    reader = _Reader(Path(path))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise reader.fail("not a Patchwise session file", hint="choose a *.patchwise-session.json")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise reader.fail(f"session version {version!r} is not a version number")
    if version > VERSION:
        raise reader.fail(
            f"session version {version} is newer than this Patchwise reads ({VERSION})",
            hint="update napari-patchwise to open it",
        )
    slides_data = reader.get(data, "slides", list, "the session", optional=False)
    if not slides_data:
        raise reader.fail("the session has no slides")
    slides = [reader.slide(entry, i) for i, entry in enumerate(slides_data)]
    current = reader.get(data, "current", int, "the session") or 0
    if not 0 <= current < len(slides):
        raise reader.fail(f"'current' is {current}, not one of the session's slides")
    camera = reader.get(data, "camera", dict, "the session")
    return Session(
        slides=slides,
        current=current,
        mask_map=reader.get(data, "mask_map", str, "the session"),
        overlay=reader.get(data, "overlay", str, "the session"),
        comparison=reader.comparison(data.get("comparison"), len(slides)),
        layers=reader.layers(reader.get(data, "layers", list, "the session")),
        camera=_camera(camera, reader),
    )


def _camera(camera: dict | None, reader: _Reader) -> dict | None:
    if camera is None:
        return None
    center = camera.get("center")
    zoom = reader.get(camera, "zoom", float, "camera", optional=False)
    if (
        not isinstance(center, list)
        or len(center) < 2
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in center)
        or not zoom > 0
    ):
        raise reader.fail("camera: 'center' must be [y, x] and 'zoom' a positive number")
    return {"center": [float(v) for v in center], "zoom": float(zoom)}


def read_session(path: str | os.PathLike) -> Session:
    """Read and check a session file (see :func:`session_from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise PatchwiseError("no such session file", path=path, hint="check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PatchwiseError("not a text file", path=path, hint=SESSION_HINT) from exc
    except json.JSONDecodeError as exc:
        raise PatchwiseError(
            f"not valid JSON (line {exc.lineno}: {exc.msg})", path=path, hint=SESSION_HINT
        ) from exc
    return session_from_dict(data, path)
