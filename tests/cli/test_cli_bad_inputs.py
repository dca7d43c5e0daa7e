"""Every bad input to the ``patchwise`` command is one line on stderr and exit status 2.

One table drives the whole CLI in-process: each row is a command line with one bad value
or file and the text the error must contain (naming the bad flag or file). For every row:
exit code 2 (ours or argparse's), exactly one line on stderr, no traceback, and nothing
written or changed in the working folder (no output, no cache, no temporary file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_patchwise.cli.main import main

SIDE = 64  # the slides are 64 x 64 pixels


def _write_slide(folder: Path, name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (3, SIDE, SIDE), dtype=np.uint8)
    tifffile.imwrite(folder / f"{name}.ome.tif", image, metadata={"axes": "CYX"}, ome=True)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[:, : SIDE // 2] = 1
    mask[: SIDE // 2, SIDE // 2 :] = 2
    tifffile.imwrite(folder / f"{name}_mask.tif", mask)


def _write_corrupt_tiff(path: Path) -> None:
    """A tiled zlib TIFF whose second tile's first bytes are overwritten."""
    image = np.random.default_rng(1).integers(0, 255, (3, SIDE, SIDE), dtype=np.uint8)
    tifffile.imwrite(
        path,
        image,
        tile=(32, 32),
        compression="zlib",
        photometric="minisblack",
        planarconfig="separate",
    )
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[1], tif.pages[0].databytecounts[1]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * min(count, 64))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Slides, manifests and runs, good and bad, written once for the whole table."""
    d = tmp_path_factory.mktemp("bad_inputs")
    _write_slide(d, "s", 0)
    _write_slide(d, "t", 1)
    _write_corrupt_tiff(d / "corrupt.tif")
    head = "image,mask,split\n"
    (d / "good.csv").write_text(head + "s.ome.tif,s_mask.tif,train\nt.ome.tif,t_mask.tif,val\n")
    (d / "extra.csv").write_text(head + "s.ome.tif,s_mask.tif,train,oops\n")
    (d / "short.csv").write_text(head + "s.ome.tif,s_mask.tif\n")
    (d / "latin1.csv").write_bytes((head + "s.ome.tif,s_mask.tif,tr\xe9in\n").encode("latin-1"))
    (d / "cohort.csv").write_bytes((d / "s.ome.tif").read_bytes())  # a TIFF named .csv
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (d / "dupcol.csv").write_text("image,mask,split,image\ns.ome.tif,s_mask.tif,train,x\n")
    (d / "twice.csv").write_text(
        "image,mask,split,slide\ns.ome.tif,s_mask.tif,train,a\ns.ome.tif,s_mask.tif,val,b\n"
    )
    (d / "folder_out.csv").mkdir()
    (d / "folder_out.geojson").mkdir()
    (d / "afile").write_text("not a folder\n")
    (d / "labels.csv").write_text("label,tissue_ratio,prob\n257,0.5,0.9\n0,0.2,0.1\n")
    run = d / "run_bad"
    run.mkdir()
    (run / "config.json").write_text('{"method": "erm", "tau": 0.1, "seed": 0}')
    (run / "metrics.json").write_text('{"selected_by": "val_wga", "by_sel')  # truncated
    (run / "history.csv").write_text("step,val_wga,val_bca\n1,0.5,0.5\n")
    (run / "best.pt").write_bytes(b"PK\x03\x04 truncated")
    return d


S = ["s.ome.tif", "--mask", "s_mask.tif"]
STATS = ["stats", *S, "--quiet", "--out", "out.csv"]
SYNTH = ["synth", "--size", "64", "64", "--quiet", "--out", "new.ome.tif"]
TRAIN = ["train", "good.csv", "--out", "new_run", "--quiet", "--steps", "1", "--model", "smallcnn"]
PREDICT = ["predict", "s.ome.tif", "--checkpoint", "run_bad", "--quiet", "--out", "pred.csv"]


# (id, command line, text the one-line error must contain)
# fmt: off
ROWS = [
    # -- values taken silently --------------------------------------------------------
    ("stats-tissue-threshold-nan", [*STATS, "--patch-size", "16", "--tissue-threshold", "nan"], "--tissue-threshold"),
    ("stats-tissue-threshold-inf", [*STATS, "--patch-size", "16", "--tissue-threshold", "inf"], "--tissue-threshold"),
    ("synth-pixel-size-inf", [*SYNTH, "--pixel-size", "inf"], "--pixel-size"),
    ("synth-pixel-size-0", [*SYNTH, "--pixel-size", "0"], "--pixel-size"),
    ("synth-pixel-size-nan", [*SYNTH, "--pixel-size", "nan"], "--pixel-size"),
    ("synth-spurious-nan", [*SYNTH, "--spurious", "nan"], "--spurious"),
    ("synth-seed-negative", [*SYNTH, "--seed", "-1"], "--seed"),
    ("stats-same-slide-twice", ["stats", "s.ome.tif", "s.ome.tif", "--mask", "s_mask.tif", "s_mask.tif", "--patch-size", "16", "--quiet", "--out", "out.csv"], "twice"),
    ("manifest-same-image-twice", ["stats", "twice.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "already listed"),
    ("stats-empty-grid", [*STATS, "--patch-size", "128"], "larger than the slide"),
    ("stats-geojson-is-out", [*STATS, "--patch-size", "16", "--geojson", "out.csv"], "--out (the table)"),
    ("stats-manifest-with-mask", ["stats", "good.csv", "--mask", "s_mask.tif", "--patch-size", "16", "--quiet", "--out", "out.csv"], "--mask is for image files"),
    ("stats-empty-grid-origin", [*STATS, "--patch-size", "16", "--origin", "60", "0"], "no 16 x 16 patch fits"),
    # A patch larger than the slide kept as an edge patch made the counting pad the slide
    # to the patch's area (18.7 GB for --patch-size 1000000000): refused before any work.
    ("stats-keep-edges-patch-larger", [*STATS, "--patch-size", "4096", "--keep-edges"], "larger than the slide"),
    ("predict-batch-size-negative", [*PREDICT, "--batch-size", "-3"], "--batch-size"),
    ("predict-threshold-2", [*PREDICT, "--threshold", "2"], "--threshold"),
    ("predict-stride-0", [*PREDICT, "--stride", "0"], "--stride"),
    ("metrics-tau-nan", ["metrics", "labels.csv", "--tau", "nan"], "--tau"),
    ("metrics-threshold-2", ["metrics", "labels.csv", "--threshold", "2"], "--threshold"),
    ("metrics-label-257", ["metrics", "labels.csv"], "label"),
    ("stats-mask-map-duplicate-key", [*STATS, "--patch-size", "16", "--mask-map", "0=background,0=tumor"], "0=background,0=tumor"),
    # -- tracebacks instead of one line -----------------------------------------------
    ("manifest-extra-field", ["stats", "extra.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "line 2"),
    ("manifest-missing-field", ["stats", "short.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "line 2"),
    ("manifest-not-utf8", ["stats", "latin1.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "UTF-8"),
    ("manifest-is-a-tiff", ["stats", "cohort.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "TIFF"),
    ("train-manifest-is-a-tiff", ["train", "cohort.csv", "--out", "new_run", "--quiet"], "TIFF"),
    ("manifest-binary", ["stats", "binary.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "binary.csv"),
    ("manifest-repeated-column", ["stats", "dupcol.csv", "--patch-size", "16", "--quiet", "--out", "out.csv"], "more than once"),
    ("corrupt-tile", ["stats", "corrupt.tif", "--mask", "s_mask.tif", "--tissue", "intensity", "--patch-size", "16", "--quiet", "--out", "out.csv"], "corrupt.tif"),
    ("stats-scheduler-not-a-url", [*STATS, "--patch-size", "16", "--scheduler", "not a url"], "--scheduler"),
    ("stats-workers-0", [*STATS, "--patch-size", "16", "--workers", "0"], "--workers"),
    ("stats-workers-negative", [*STATS, "--patch-size", "16", "--workers", "-1"], "--workers"),
    ("stats-patch-size-0", [*STATS, "--patch-size", "0"], "--patch-size"),
    ("stats-patch-size-huge", [*STATS, "--patch-size", "100000000000000000000"], "--patch-size"),
    ("stats-stride-negative", [*STATS, "--patch-size", "16", "--stride", "-1"], "--stride"),
    ("stats-origin-negative", [*STATS, "--patch-size", "16", "--origin", "-1", "0"], "--origin"),
    ("synth-size-huge", ["synth", "--size", "10000000", "10000000", "--quiet", "--out", "new.ome.tif"], "--size"),
    ("synth-tile-huge", [*SYNTH, "--tile", "1000000000"], "--tile"),
    ("synth-tile-not-multiple-of-16", [*SYNTH, "--tile", "100"], "--tile"),
    ("convert-pixel-size-nan", ["convert", "s.ome.tif", "--pixel-size", "nan", "--quiet", "--out", "c.ome.tif"], "--pixel-size"),
    ("convert-tile-huge", ["convert", "s.ome.tif", "--tile", "1000000000", "--quiet", "--out", "c.ome.tif"], "--tile"),
    ("demo-size-huge", ["demo", "--size", "10000000", "--no-gui", "--out", "demo_out"], "--size"),
    ("view-patch-size-0", ["view", "s.ome.tif", "--patch-size", "0"], "--patch-size"),
    ("view-tau-2", ["view", "s.ome.tif", "--tau", "2"], "--tau"),
    ("train-weight-decay-negative", [*TRAIN, "--weight-decay", "-1"], "--weight-decay"),
    ("train-momentum-negative", [*TRAIN, "--momentum", "-1"], "--momentum"),
    ("train-eval-batch-size-0", [*TRAIN, "--eval-batch-size", "0"], "--eval-batch-size"),
    ("train-num-workers-negative", [*TRAIN, "--num-workers", "-1"], "--num-workers"),
    ("train-seed-negative", [*TRAIN, "--seed", "-1"], "--seed"),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], "--lr"),
    ("train-tau-2", [*TRAIN, "--tau", "2"], "--tau"),
    ("train-patch-larger-than-slides", [*TRAIN, "--patch-size", "128"], "larger than the slide"),
    ("train-out-is-a-file", ["train", "good.csv", "--out", "afile", "--quiet", "--steps", "1", "--model", "smallcnn"], "afile"),
    ("predict-truncated-checkpoint", PREDICT, "best.pt"),
    ("stats-mask-map-unreadable", [*STATS, "--patch-size", "16", "--mask-map", "0=foo"], "0=foo"),
    # -- outputs ----------------------------------------------------------------------
    ("stats-out-is-a-folder", ["stats", *S, "--patch-size", "16", "--quiet", "--out", "folder_out.csv"], "folder_out.csv"),
    ("stats-geojson-is-a-folder", [*STATS, "--patch-size", "16", "--geojson", "folder_out.geojson"], "folder_out.geojson"),
    ("stats-out-is-the-manifest", ["stats", "good.csv", "--patch-size", "16", "--quiet", "--out", "good.csv"], "good.csv"),
    ("synth-mask-out-is-out", [*SYNTH, "--mask-out", "new.ome.tif"], "new.ome.tif"),
    ("report-malformed-metrics", ["report", "run_bad", "--out", "report.html"], "metrics.json"),
]
# fmt: on


def _params():
    for name, argv, text in ROWS:
        yield pytest.param(argv, text, id=name)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize(("argv", "text"), list(_params()))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(work, argv, text, capsys, monkeypatch):
    monkeypatch.chdir(work)
    monkeypatch.setenv("PATCHWISE_CACHE_DIR", str(work / "cache"))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    before = _snapshot(work)
    code = main(argv)  # argparse's usage errors too are a returned status
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"patchwise {argv[0]}: error: "), err
    assert text in lines[0], err
    assert _snapshot(work) == before, "the command wrote or changed files"
    assert not os.path.exists(work / "cache")
