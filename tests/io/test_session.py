"""Session files (napari_patchwise.io.session): round trip, relative paths, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.session import (
    FORMAT,
    VERSION,
    Comparison,
    LayerView,
    Session,
    SessionSlide,
    read_session,
    write_session,
)


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder: slides/, runs/ and a sessions/ folder beside them."""
    for name in ("slides/a.ome.tif", "slides/a_mask.tif", "runs/p.parquet", "runs/q.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "runs" / "erm").mkdir()
    (tmp_path / "sessions").mkdir()
    return tmp_path


def a_session(root: Path) -> Session:
    settings = {"patch_size": 32, "stride": 0, "keep_edges": False, "tissue": "mask"}
    settings |= {"tissue_threshold": 0.0, "background": "dark", "attribute": "tissue_ratio"}
    settings |= {"tau": 0.25, "threshold": 0.625}
    slide = SessionSlide(
        image=root / "slides/a.ome.tif",
        mask=root / "slides/a_mask.tif",
        computed=True,
        predictions=root / "runs/p.parquet",
        settings=settings,
        reviewed=[(3, 4), (0, 7)],
    )
    return Session(
        slides=[slide],
        mask_map="0=background,1=healthy,2=tumor",
        overlay="outcome",
        comparison=Comparison(root / "runs/p.parquet", root / "runs/erm", ("ERM", "GERNE")),
        layers=[LayerView("a", True, 1.0), LayerView("a_mask", False, 0.3)],
        camera={"center": [10.5, 20.0], "zoom": 2.0},
    )


def test_round_trip_with_paths_relative_to_the_session_file(project):
    session = a_session(project)
    path = write_session(session, project / "sessions" / "review")
    assert path.name == "review.patchwise-session.json"
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["version"] == VERSION
    (slide,) = data["slides"]
    assert slide["image"] == "../slides/a.ome.tif" and slide["predictions"] == "../runs/p.parquet"
    assert slide["reviewed"] == [[3, 4], [0, 7]]
    assert data["comparison"]["b"] == "../runs/erm"
    assert read_session(path) == session
    # the project folder moved as a whole: the session still opens, on the moved files
    moved = project.parent / "moved"
    os.rename(project, moved)
    again = read_session(moved / "sessions" / path.name)
    assert again.slides[0].image == moved / "slides/a.ome.tif"
    assert again == a_session(moved)
    assert not [p for p in (moved / "sessions").iterdir() if p.name != path.name]  # no temp


def test_reviewed_is_optional(project):
    session = a_session(project)
    session.slides[0].reviewed = None
    path = write_session(session, project / "s.patchwise-session.json")
    assert "reviewed" not in json.loads(path.read_text())["slides"][0]
    assert read_session(path).slides[0].reviewed is None


def write_json(project: Path, change) -> Path:
    path = write_session(a_session(project), project / "sessions" / "s.patchwise-session.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _set(*keys_value):
    *keys, value = keys_value

    def change(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set("version", 2), "session version 2 is newer than this Patchwise reads (1)"),
        (_set("version", "1"), "session version '1' is not a version number"),
        (_set("format", "x"), "not a Patchwise session file"),
        (_set("slides", 0, "image", "../slides/gone.tif"), "slide 1: image "),
        (_set("slides", 0, "settings", "tau", "high"), "'tau' is 'high', not a number"),
        (_set("slides", 0, "settings", "patch_size", True), "not a whole number"),
        (_set("slides", 0, "reviewed", [[1]]), "'reviewed' must list [row, col] pairs"),
        (_set("slides", []), "the session has no slides"),
        (_set("current", 3), "'current' is 3"),
        (_set("comparison", "b", "../runs/none"), "comparison: b "),
        (_set("camera", {"center": [1], "zoom": 1}), "camera: 'center' must be"),
    ],
)
def test_bad_session_is_one_line_naming_the_file(project, change, expected):
    path = write_json(project, change)
    with pytest.raises(PatchwiseError) as info:
        read_session(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    assert expected in message


def test_missing_slide_names_the_resolved_path(project):
    path = write_session(a_session(project), project / "sessions" / "s.patchwise-session.json")
    (project / "slides/a.ome.tif").unlink()
    with pytest.raises(PatchwiseError, match=r"image .*slides/a\.ome\.tif does not exist"):
        read_session(path)


def test_not_json_and_no_file(project):
    path = project / "bad.patchwise-session.json"
    path.write_text("{nope")
    with pytest.raises(PatchwiseError, match="not valid JSON"):
        read_session(path)
    with pytest.raises(PatchwiseError, match="no such session file"):
        read_session(project / "none.patchwise-session.json")
