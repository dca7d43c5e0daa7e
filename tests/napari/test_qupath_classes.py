"""One QuPath class scheme (label, group, outcome) for the dock's and the CLI's GeoJSON.

The slide is test_widget's hand-built one (8 x 8 patches of 64 px, every patch's label,
tissue ratio and made-up probability known), written as an OME-TIFF with a physical
pixel size of 0.5 µm, so every count and every µm value is checked against numbers
computed here by hand.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import tifffile
from test_widget import LABEL, PROB, RATIO, N, P, expected_groups, expected_outcomes, make_slide

from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.reporting.qupath import scheme_classes, write_patches

UM = 0.5  # µm per pixel
TAU = 0.1
OUTCOMES = ("TN", "FP", "FN", "TP")
GROUPS = ("non-tumor/small", "non-tumor/large", "tumor/small", "tumor/large")


@pytest.fixture
def slide_files(tmp_path):
    image, mask = make_slide()
    image_path, mask_path = tmp_path / "slide.ome.tif", tmp_path / "slide_mask.tif"
    metadata = {
        "axes": "YX",
        "PhysicalSizeX": UM,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": UM,
        "PhysicalSizeYUnit": "µm",
    }
    tifffile.imwrite(image_path, image, ome=True, metadata=metadata)
    tifffile.imwrite(mask_path, mask)
    return image_path, mask_path


def cli_geojson(slide_files, tmp_path, *extra: str) -> tuple[pd.DataFrame, list[dict]]:
    image, mask = slide_files
    table, out = tmp_path / "table.parquet", tmp_path / f"cli{len(extra)}.geojson"
    args = ["stats", str(image), "--mask", str(mask), "--patch-size", str(P), "--quiet"]
    assert main([*args, "--geojson", str(out), "--out", str(table), *extra]) == 0
    return pd.read_parquet(table), json.loads(out.read_text())["features"]


def classes(features) -> Counter:
    return Counter(f["properties"]["classification"]["name"] for f in features)


def rows_cols(features, size: int = P) -> set[tuple[int, int]]:
    """Each feature's grid cell, from its level-0 pixel geometry (tiling ``size`` px)."""
    corners = [f["geometry"]["coordinates"][0][0] for f in features]
    return {(y // size, x // size) for x, y in corners}


def with_prob(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["prob"] = PROB[table["row"], table["col"]]
    return table


def test_label_and_group_counts_equal_the_hand_counts(slide_files, tmp_path):
    _, features = cli_geojson(slide_files, tmp_path)  # label: the default
    assert classes(features) == {"tumor": int(LABEL.sum()), "non-tumor": int((LABEL == 0).sum())}
    _, features = cli_geojson(slide_files, tmp_path, "--geojson-classes", "group")
    groups = expected_groups(TAU).ravel()
    assert classes(features) == {GROUPS[g]: int((groups == g).sum()) for g in set(groups)}
    colours = scheme_classes("group")
    for f in features:  # the overlays' colours, and the group id measured as well
        name = f["properties"]["classification"]["name"]
        assert tuple(f["properties"]["classification"]["color"]) == colours[name]
        assert GROUPS[f["properties"]["measurements"]["group"]] == name


def test_measurements_are_in_um_from_the_pixel_size(slide_files, tmp_path):
    _, features = cli_geojson(slide_files, tmp_path)
    assert len(features) == N * N
    for f in features:
        ring = f["geometry"]["coordinates"][0]
        (x0, y0), (x1, y1) = ring[0], ring[2]
        m = f["properties"]["measurements"]
        r, c = y0 // P, x0 // P
        assert (x1 - x0, y1 - y0) == (P, P)  # geometry: level-0 pixels (QuPath's)
        assert (m["x_um"], m["y_um"]) == (c * P * UM, r * P * UM)
        assert (m["width_um"], m["height_um"]) == (P * UM, P * UM)
        assert m["area_um2"] == (P * UM) ** 2 == 1024.0
        assert m["tissue_ratio"] == pytest.approx(RATIO[r, c])
        assert m["label"] == LABEL[r, c] and "outcome" not in m and "prob" not in m


def test_outcome_classes_and_errors_only_with_predictions(slide_files, tmp_path):
    table, _ = cli_geojson(slide_files, tmp_path)
    table = with_prob(table)
    path = tmp_path / "outcome.geojson"
    n = write_patches(table, path, scheme="outcome", pixel_size=(UM, UM))
    features = json.loads(path.read_text())["features"]
    outcomes = expected_outcomes(0.5).ravel()
    assert n == N * N
    assert classes(features) == {OUTCOMES[o]: int((outcomes == o).sum()) for o in set(outcomes)}
    for f in features:
        m = f["properties"]["measurements"]
        assert OUTCOMES[m["outcome"]] == f["properties"]["classification"]["name"]
        assert m["prob"] == PROB[int(m["y_um"] / UM) // P, int(m["x_um"] / UM) // P]
    # only the errors: exactly the false positives and false negatives, in any scheme
    errors = set(zip(*np.nonzero(np.isin(expected_outcomes(0.5), (1, 2))), strict=True))
    for scheme in ("label", "group", "outcome"):
        n = write_patches(table, path, scheme=scheme, errors_only=True)
        features = json.loads(path.read_text())["features"]
        assert n == len(errors) == len(features) and rows_cols(features) == errors


def test_outcome_classes_without_predictions_are_one_clear_line(slide_files, tmp_path, capsys):
    table, _ = cli_geojson(slide_files, tmp_path)
    with pytest.raises(PatchwiseError, match="outcome classes need predictions"):
        write_patches(table, tmp_path / "x.geojson", scheme="outcome")
    with pytest.raises(PatchwiseError, match="need predictions"):
        write_patches(table, tmp_path / "x.geojson", errors_only=True)
    assert not (tmp_path / "x.geojson").exists()
    image, mask = slide_files
    for flag in (["--geojson-classes", "outcome"], ["--errors-only"]):
        capsys.readouterr()
        code = main(["stats", str(image), "--mask", str(mask), "--patch-size", "64", "--geojson",
                     str(tmp_path / "y.geojson"), "--out", str(tmp_path / "y.csv"), *flag])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert code != 0 and "need predictions" in err and "\n" not in err
        assert "Traceback" not in err and not (tmp_path / "y.geojson").exists()


def save_from_dock(widget, qtbot, path, scheme: str, infos) -> list[dict]:
    files = widget.table_files
    files.geojson_classes.setCurrentText(scheme)
    files.save_geojson(path)
    qtbot.waitUntil(lambda: not files.export_job.busy(), timeout=60_000)
    assert infos[-1] == f"Patchwise: saved {N * N} tiles to {path}"
    return json.loads(path.read_text())["features"]


def same_features(a: list[dict], b: list[dict]) -> None:
    key = lambda f: f["geometry"]["coordinates"][0][0][::-1]  # noqa: E731
    assert len(a) == len(b) == N * N
    assert sorted(a, key=key) == sorted(b, key=key)


@pytest.mark.gui
def test_the_dock_writes_the_same_features_as_the_cli(
    slide_files, tmp_path, make_napari_viewer, qtbot, monkeypatch
):
    from napari_patchwise._napari.dock import notify
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    errors, infos = [], []
    monkeypatch.setattr(notify, "show_error", errors.append)
    monkeypatch.setattr(notify, "show_info", infos.append)
    viewer = make_napari_viewer(show=True)
    for path in slide_files:  # through the reader: the slide's pixel size is 0.5 µm
        viewer.open(str(path), plugin="napari-patchwise")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(patch_size=P)
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    assert not errors, errors
    for scheme in ("label", "group"):
        table, cli = cli_geojson(slide_files, tmp_path, "--geojson-classes", scheme)
        same_features(save_from_dock(widget, qtbot, tmp_path / "dock.geojson", scheme, infos), cli)
    files = widget.table_files
    files.save_geojson(tmp_path / "no.geojson", scheme="outcome")  # no predictions yet
    assert errors == [
        "slide: outcome classes and 'only errors' need predictions — load predictions first, "
        "or save label or group classes."
    ]
    assert not files.export_job.busy() and not (tmp_path / "no.geojson").exists()
    rows, cols = np.indices((N, N))
    frame = {"row": rows.ravel(), "col": cols.ravel(), "prob": PROB.ravel()}
    assert widget.set_predictions(pd.DataFrame(frame))
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    core = tmp_path / "core.geojson"  # the CLI's table with the same predictions
    write_patches(with_prob(table), core, scheme="outcome", pixel_size=(UM, UM))
    dock = save_from_dock(widget, qtbot, tmp_path / "dock.geojson", "outcome", infos)
    same_features(dock, json.loads(core.read_text())["features"])


@pytest.mark.torch
def test_predict_geojson_gives_the_outcomes_of_its_table(tmp_path, capsys):
    pytest.importorskip("torch")
    from _cohort import make_cohort
    from napari_patchwise.training.loop import TrainConfig, train

    manifest = make_cohort(tmp_path)
    options = {"model": "smallcnn", "patch_size": 16, "steps": 2, "eval_every": 2}
    run = train(TrainConfig.from_options(manifest=str(manifest), out=str(tmp_path / "run"),
                                         batch_size=16, num_threads=1, **options))  # fmt: skip
    image, mask = tmp_path / "s3.ome.tif", tmp_path / "s3_mask.tif"
    table_path, out = tmp_path / "pred.parquet", tmp_path / "pred.geojson"
    args = ["predict", str(image), "--checkpoint", str(run), "--quiet", "--out", str(table_path)]
    for extra in (["--geojson-classes", "outcome"], ["--errors-only"]):
        assert main([*args, "--mask", str(mask), "--geojson", str(out), *extra]) == 0
        table = pd.read_parquet(table_path)
        outcome = 2 * table["label"] + table["pred"]  # the run's decisions, as in the table
        features = json.loads(out.read_text())["features"]
        if extra == ["--errors-only"]:  # label classes of exactly the FP and FN patches
            errors = table[outcome.isin((1, 2))]
            assert classes(features) == Counter(np.where(errors["label"], "tumor", "non-tumor"))
            cells = set(zip(errors["row"], errors["col"], strict=True))
            assert rows_cols(features, 16) == cells
        else:
            assert classes(features) == Counter(np.asarray(OUTCOMES)[outcome])
    capsys.readouterr()
    assert main([*args, "--geojson", str(tmp_path / "nomask.geojson")]) != 0  # no labels
    err = capsys.readouterr().err.strip()
    assert "needs a mask" in err and "\n" not in err
