"""Patient-level splits: ``patchwise split`` and the manifest's ``patient`` column.

Exact assignments on hand-built manifests: no patient in two splits, the same result for
the same seed, slide counts as close to the fractions as whole patients allow, every
split with a positive share non-empty where there are units enough. ``train``, ``sweep``
and ``embed`` refuse a manifest that puts one patient in two splits, before any patch
cache is built.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from napari_patchwise.cli.main import main
from napari_patchwise.cohort.manifest import read_manifest
from napari_patchwise.cohort.split import assign_splits, split_manifest
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.training import data
from napari_patchwise.training import embed as embed_module


def _write(folder: Path, patients: list[str], *, split: list[str] | None = None) -> Path:
    """A manifest of ``len(patients)`` slides (empty files stand in for the images)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ["image", "mask", "patient"] + (["split"] if split else [])
    lines = [",".join(header)]
    for i, patient in enumerate(patients):
        (folder / f"s{i}.tif").write_bytes(b"")
        (folder / f"s{i}_mask.tif").write_bytes(b"")
        row = [f"s{i}.tif", f"s{i}_mask.tif", patient] + ([split[i]] if split else [])
        lines.append(",".join(row))
    path = folder / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _splits_of_patients(rows) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row["patient"], set()).add(row["split"])
    return out


# -- the assignment --------------------------------------------------------------------------
def test_assign_whole_patients_exact_counts():
    # 20 slides: A 6, B 4, C 3, D 2, E..I 1 each -> targets 14, 3, 3
    sizes = {"A": 6, "B": 4, "C": 3, "D": 2, "E": 1, "F": 1, "G": 1, "H": 1, "I": 1}
    for seed in range(5):
        where = assign_splits(sizes, (0.7, 0.15, 0.15), seed)
        counts = {
            s: sum(n for u, n in sizes.items() if where[u] == s) for s in ("train", "val", "test")
        }
        assert counts == {"train": 14, "val": 3, "test": 3}, (seed, where)
        assert set(where) == set(sizes)


def test_assign_is_deterministic_and_the_seed_matters():
    sizes = {f"P{i}": 1 for i in range(20)}
    first = assign_splits(sizes, (0.7, 0.15, 0.15), 3)
    assert assign_splits(sizes, (0.7, 0.15, 0.15), 3) == first
    others = [assign_splits(sizes, (0.7, 0.15, 0.15), s) for s in range(4, 10)]
    assert any(o != first for o in others)
    assert sorted(first.values()).count("train") == 14
    assert sorted(first.values()).count("val") == 3
    assert sorted(first.values()).count("test") == 3


def test_assign_exact_on_a_hand_built_case():
    # one large patient of 8 slides and two of 1: the large one is train, the others
    # val and test (ties go to the earlier split); the same for every seed
    sizes = {"big": 8, "x": 1, "y": 1}
    for seed in range(4):
        where = assign_splits(sizes, (0.7, 0.15, 0.15), seed)
        assert where["big"] == "train"
        assert {where["x"], where["y"]} == {"val", "test"}


def test_assign_keeps_small_splits_non_empty():
    # 10 single-slide patients at 0.9 / 0.05 / 0.05: targets 9, 0.5, 0.5 -> 8, 1, 1
    sizes = {f"P{i}": 1 for i in range(10)}
    where = list(assign_splits(sizes, (0.9, 0.05, 0.05), 0).values())
    assert (where.count("train"), where.count("val"), where.count("test")) == (8, 1, 1)


def test_assign_zero_test_share_leaves_test_empty():
    sizes = {f"P{i}": 1 for i in range(4)}
    where = list(assign_splits(sizes, (0.5, 0.5, 0.0), 0).values())
    assert (where.count("train"), where.count("val"), where.count("test")) == (2, 2, 0)


@pytest.mark.parametrize(
    "fractions", [(0.5, 0.5, 0.5), (0.7, 0.3), (1.0, 0.0, 0.0), (0.8, 0.3, -0.1)]
)
def test_assign_refuses_bad_fractions(fractions):
    with pytest.raises(PatchwiseError, match="--fractions"):
        assign_splits({"a": 1, "b": 1}, fractions, 0)


# -- the manifest ----------------------------------------------------------------------------
def test_split_manifest_by_patient(tmp_path):
    patients = ["A"] * 4 + ["B"] * 3 + ["C"] * 2 + ["D", "E", "F", "G", "H", "I", "J", "K"]
    manifest = _write(tmp_path / "in", patients)  # 17 slides, 11 patients
    out = tmp_path / "out" / "split.csv"
    summary = split_manifest(manifest, out, by="patient", fractions=(0.6, 0.2, 0.2), seed=1)
    rows = _read(out)
    assert [r["patient"] for r in rows] == patients  # order and columns kept
    assert list(rows[0]) == ["image", "mask", "patient", "split"]
    assert all(len(s) == 1 for s in _splits_of_patients(rows).values())
    counts = [sum(r["split"] == s for r in rows) for s in ("train", "val", "test")]
    assert counts == [10, 4, 3] or counts == [10, 3, 4]  # targets 10.2, 3.4, 3.4
    assert summary["slides"] == dict(zip(("train", "val", "test"), counts, strict=True))
    assert rows[0]["image"] == "../in/s0.tif"  # relative to the new manifest's folder
    entries = read_manifest(out)  # a valid manifest for training
    assert [e.patient for e in entries] == patients
    again = tmp_path / "again.csv"
    split_manifest(manifest, again, by="patient", fractions=(0.6, 0.2, 0.2), seed=1)
    assert [r["split"] for r in _read(again)] == [r["split"] for r in rows]


def test_split_manifest_by_slide_replaces_a_split_column(tmp_path):
    manifest = _write(tmp_path, ["A"] * 10, split=["test"] * 10)
    out = tmp_path / "split.csv"
    summary = split_manifest(manifest, out, by="slide", fractions=(0.7, 0.15, 0.15), seed=0)
    rows = _read(out)
    assert list(rows[0]) == ["image", "mask", "patient", "split"]
    assert summary["slides"] == {"train": 7, "val": 2, "test": 1}
    assert rows[0]["image"] == "s0.tif"


def test_split_cli_writes_and_reports(tmp_path, capsys):
    manifest = _write(tmp_path, ["A", "A", "B", "C", "D"])
    out = tmp_path / "split.csv"
    argv = ["split", manifest, "--by", "patient", "--fractions", "0.6", "0.2", "0.2"]
    assert main([str(a) for a in [*argv, "--seed", "2", "--out", out]]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "train 3 slide(s) of 2 patient(s)" in captured.err
    assert all(len(s) == 1 for s in _splits_of_patients(_read(out)).values())


@pytest.mark.parametrize(
    ("patients", "extra", "text"),
    [
        (["A", "", "B"], [], "line 3: no patient for slide 's1'"),
        (None, [], "lacks column(s) patient"),
        (["A", "B"], ["--fractions", "0.5", "0.5", "0.5"], "--fractions must sum to 1"),
    ],
)
def test_split_cli_refuses(tmp_path, capsys, patients, extra, text):
    if patients is None:
        manifest = tmp_path / "cohort.csv"
        manifest.write_text("image,mask,split\na.tif,a_mask.tif,train\n")
    else:
        manifest = _write(tmp_path, patients)
    out = tmp_path / "split.csv"
    assert main([str(a) for a in ["split", manifest, *extra, "--out", out]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0], err
    assert not out.exists()


def test_split_cli_refuses_to_overwrite_its_input(tmp_path, capsys):
    manifest = _write(tmp_path, ["A", "B"])
    before = manifest.read_text()
    assert main(["split", str(manifest), "--out", str(manifest)]) == 2
    assert "would overwrite the input manifest" in capsys.readouterr().err
    assert manifest.read_text() == before


# -- a patient in two splits is refused ------------------------------------------------------
def test_read_manifest_refuses_patient_in_two_splits(tmp_path):
    manifest = _write(tmp_path, ["A", "B", "A"], split=["train", "val", "test"])
    with pytest.raises(PatchwiseError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "patient 'A' is in two splits: train (line 2) and test (line 4)" in message
    assert message.count("\n") == 0


@pytest.fixture
def leaky(tmp_path, monkeypatch) -> Path:
    pytest.importorskip("torch")
    from _cohort import make_cohort

    manifest = make_cohort(tmp_path / "c", splits=("train", "val", "test"), cells=4)
    text = manifest.read_text().splitlines()
    rows = [text[0] + ",patient"] + [f"{line},{p}" for line, p in zip(text[1:], "ABA", strict=True)]
    manifest.write_text("\n".join(rows) + "\n")

    def refuse(*args, **kwargs):
        raise AssertionError("a patch cache was built before the refusal")

    monkeypatch.setattr(data, "slide_patches", refuse)
    monkeypatch.setattr(embed_module, "slide_patches", refuse)  # embed's own reference
    return manifest


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "smallcnn", "--patch-size", "16", "--quiet", "--out", "R"],
        ["sweep", "--model", "smallcnn", "--grid", "lr=0.1,0.2", "--quiet", "--out", "R"],
        ["embed", "--backbone", "resnet18", "--patch-size", "16", "--quiet", "--out", "R.zarr"],
    ],
    ids=["train", "sweep", "embed"],
)
def test_commands_refuse_patient_in_two_splits(leaky, tmp_path, capsys, argv):
    argv = [a.replace("R", str(tmp_path / "R")) if a.startswith("R") else a for a in argv]
    assert main([argv[0], str(leaky), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "patient 'A' is in two splits: train (line 2) and test (line 4)" in err[0]
    assert not (leaky.parent / ".patchwise-cache").exists()
