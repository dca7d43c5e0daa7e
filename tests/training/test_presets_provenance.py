"""Every value of every preset has a documented source in docs/presets.md.

A preset row reads ``| `--flag` | value | source | why |``; the source is the tumor
paper, the GERNE paper's App. F, SubpopBench, or this project's choice (with a reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from napari_patchwise.training.presets import PRESETS

DOC = Path(__file__).resolve().parents[2] / "docs" / "presets.md"
SOURCES = {"tumor paper", "GERNE App. F", "SubpopBench", "this project's choice"}
ROW = re.compile(r"^\|\s*`(--[a-z-]+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|\s*$")


def _sections() -> dict[str, str]:
    """The text under each ``## `name``` heading of docs/presets.md."""
    parts = re.split(r"^## `([a-z-]+)`\s*$", DOC.read_text(encoding="utf-8"), flags=re.M)
    return {
        name: re.split(r"^## ", body, flags=re.M)[0]
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def _rows(section: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = tuple(c.strip() for c in m.groups()[1:])
    return rows


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_value_has_a_documented_source(name):
    sections = _sections()
    assert name in sections, f"docs/presets.md has no section for preset {name!r}"
    rows = _rows(sections[name])
    preset = PRESETS[name]
    flags = {"--" + key.replace("_", "-"): value for key, value in preset.options.items()}
    if preset.needs_weights:
        flags["--weights"] = None
    missing = sorted(set(flags) - set(rows))
    assert not missing, f"preset {name}: no source row for {missing}"
    for flag, value in flags.items():
        shown, source, why = rows[flag]
        assert source in SOURCES, f"preset {name} {flag}: unknown source {source!r}"
        if source == "this project's choice":
            assert why, f"preset {name} {flag}: this project's choice needs a reason"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert float(shown) == value, (name, flag, shown, value)
        elif value is not None:  # the documented value is the preset's
            assert shown.strip("`") == _shown(value), (name, flag, shown, value)
    assert set(rows) <= set(flags), f"preset {name}: rows for values it does not set"


def test_what_the_tumor_paper_does_not_specify_is_listed():
    text = _sections()["paper"]
    assert "2511.13527" in text and "2503.13236" in text and "App. F" in text
    unspecified = text.split("does not specify", 1)[1]
    for setting in ("steps", "patch size", "stride", "resizing", "augmentation", "normalisation"):
        assert re.search(rf"^\| [a-z ]*{setting}", unspecified, flags=re.M), setting


def test_no_document_calls_the_preset_the_gerne_papers_histopathology_settings():
    root = DOC.parents[1]
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    files += sorted((root / "src").rglob("*.py"))
    wrong = re.compile(r"the paper's (recipe|settings)|histopathology experiments", re.I)
    hits = [
        f"{f.relative_to(root)}:{i}"
        for f in files
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1)
        if wrong.search(line)
    ]
    assert not hits, hits
