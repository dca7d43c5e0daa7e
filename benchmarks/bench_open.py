"""Opening and panning a huge slide in napari: time to first frame and peak memory.

Measures, each in a fresh process under the current X display (run under ``xvfb-run``):

* Patchwise reader, synthetic 50k x 50k x 3 pyramidal OME-TIFF: time from
  ``viewer.open`` to the first rendered frame, and peak resident memory (RSS) while the
  camera, zoomed to full resolution (one data pixel per screen pixel, pyramid level 0),
  steps over a grid of positions spanning the whole slide with a draw at every step.
* Baseline, same run: napari's built-in reader on a smaller slide (8k x 8k x 3, which it
  loads whole into memory), and the Patchwise reader on that same smaller slide.

Targets (docs/benchmarks.md, "Budgets"): first frame < 2 s, peak RSS < 1.5 GB.

The slides are generated once into ``benchmarks/_data/`` (git-ignored) with
``write_synthetic_slide``; their writing time is reported too.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_open.py

``--quick`` (what ``make bench`` runs): an 8192 px mosaic of a 2048 px slide, a 2048 px
baseline slide, 2 x 2 pan positions; the same three runs and table. Its slides are kept in
``benchmarks/_data/quick/`` and its results in ``bench_open_quick.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
RESULTS = HERE / "_results"
QUICK_DATA = DATA / "quick"  # small inputs of --quick, apart from the full-size ones


def ensure_slide(size: int, data: Path = DATA) -> tuple[Path, float | None]:
    """The synthetic slide of side ``size`` (written if missing) and its write time."""
    from napari_patchwise._progress import tqdm_progress
    from napari_patchwise.synth import SynthConfig, write_synthetic_slide

    path = data / f"synth{size}.ome.tif"
    if path.is_file():
        return path, None
    data.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tqdm_progress(f"writing {path.name}", unit="‰") as progress:
        write_synthetic_slide(path, config=SynthConfig(size=(size, size)), progress=progress)
    return path, time.perf_counter() - start


def ensure_mosaic(size: int, tile_side: int = 4096, data: Path = DATA) -> tuple[Path, float | None]:
    """A ``size``-square slide tiled from the synthetic ``tile_side`` slide (if missing).

    Rendering a unique 50k x 50k slide takes ~1000 CPU-seconds (8 min on two idle
    cores, hours on this shared machine); opening and panning only depend on the file's
    structure (OME-TIFF, 512 px zlib tiles, SubIFD pyramid down to <= 256 px) and the
    cost of decoding its tiles, which a mosaic of a real synthetic slide keeps. The
    mosaic's levels are exact: tile level k repeated (``tile_side`` is a power of two).
    """
    import dask.array as da
    import tifffile

    from napari_patchwise._progress import tqdm_progress
    from napari_patchwise.io.pyramid import build_pyramid
    from napari_patchwise.io.write import write_ome_tiff
    from napari_patchwise.synth import CHANNEL_NAMES

    path = data / f"mosaic{size}.ome.tif"
    if path.is_file():
        return path, None
    source, _ = ensure_slide(tile_side, data)
    with tifffile.TiffFile(source) as tif:
        tile0 = tif.series[0].levels[0].asarray()
    start = time.perf_counter()
    big_sizes = [size]
    while max(big_sizes[-1], big_sizes[-1]) > 256 and big_sizes[-1] >= 2:
        big_sizes.append(big_sizes[-1] // 2)
    tiles = build_pyramid(da.from_array(tile0), min_size=1)[: len(big_sizes)]
    levels = []
    for side, tile in zip(big_sizes, tiles, strict=False):
        reps = -(-side // tile.shape[-1])
        levels.append(da.tile(tile.persist(), (1, reps, reps))[:, :side, :side])
    with tqdm_progress(f"writing {path.name}", unit="tile") as progress:
        write_ome_tiff(
            path,
            levels,
            channel_names=list(CHANNEL_NAMES),
            pixel_size=0.5,
            compression_level=1,
            progress=progress,
        )
    return path, time.perf_counter() - start


class PeakRSS:
    """Samples this process's resident memory every few milliseconds in a thread."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def measure(path: Path, plugin: str, grid: int) -> dict:
    """In this process: open ``path`` with ``plugin``, draw, pan at level 0, report."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    for _ in range(5):
        QApplication.processEvents()

    def draw() -> np.ndarray:
        QApplication.processEvents()  # napari reacts to the camera (loads tiles) ...
        return viewer.screenshot(canvas_only=True, flash=False)  # ... and renders

    # Warm up napari's one-time costs (GL context, shaders for additive image layers,
    # the reader plugin's import) on a tiny image, so the first frame measures opening.
    for colormap in ("magenta", "green", "cyan"):
        viewer.add_image(np.zeros((64, 64), np.uint8), colormap=colormap, blending="additive")
    draw()
    viewer.layers.clear()
    import napari_patchwise._napari.reader  # noqa: F401

    with PeakRSS() as rss:
        # Cold: the first file of the session (the reader's own imports included).
        start = time.perf_counter()
        viewer.open(str(path), plugin=plugin)
        draw()
        first_frame_cold = time.perf_counter() - start
        viewer.layers.clear()
        # Warm: opening a slide in a running session (what the < 2 s target is about).
        start = time.perf_counter()
        layers = viewer.open(str(path), plugin=plugin)
        shot = draw()
        first_frame = time.perf_counter() - start
        lit_first = float((shot[..., :3].max(axis=-1) > 40).mean())

        # Full resolution: one data pixel per screen pixel.
        layer = layers[0]
        scale = float(layer.scale[-1])
        viewer.camera.zoom = 1.0 / scale
        height, width = (
            (int(s) for s in layer.data[0].shape[-2:])
            if layer.multiscale
            else (int(s) for s in layer.data.shape[-2:])
        )
        canvas_h, canvas_w = (int(s) for s in shot.shape[:2])
        ys = np.linspace(canvas_h / 2, height - canvas_h / 2, grid)
        xs = np.linspace(canvas_w / 2, width - canvas_w / 2, grid)
        levels, step_times, lit = [], [], []
        for i, y in enumerate(ys):
            for x in xs if i % 2 == 0 else xs[::-1]:  # serpentine: neighbours stay close
                t = time.perf_counter()
                viewer.camera.center = (y * scale, x * scale)
                shot = draw()
                step_times.append(time.perf_counter() - t)
                lit.append(float((shot[..., :3].max(axis=-1) > 40).mean()))
                if layer.multiscale:
                    levels.append(int(layer.data_level))
    viewer.close()
    return {
        "plugin": plugin,
        "file": path.name,
        "shape": [int(s) for s in (layer.data[0] if layer.multiscale else layer.data).shape],
        "layers": len(layers),
        "first_frame_s": round(first_frame, 3),
        "first_frame_cold_s": round(first_frame_cold, 3),
        "first_frame_lit_fraction": round(lit_first, 3),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "pan_steps": len(step_times),
        "pan_step_median_s": round(float(np.median(step_times)), 3),
        "pan_step_max_s": round(float(np.max(step_times)), 3),
        "pan_levels_shown": sorted(set(levels)) if levels else [0],
        "pan_lit_fraction_mean": round(float(np.mean(lit)), 3),
    }


def run_child(path: Path, plugin: str, grid: int) -> dict:
    """Measure in a fresh process, so one measurement's memory never counts for another."""
    cmd = [sys.executable, __file__, "--child", str(path), plugin, str(grid)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="big slide side (50000)")
    parser.add_argument("--baseline-size", type=int, default=None, help="small slide (8192)")
    parser.add_argument("--grid", type=int, default=None, help="pan positions per axis (8)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    parser.add_argument(
        "--render",
        action="store_true",
        help="render a unique big slide (slow) instead of a mosaic of a 4096 px one",
    )
    parser.add_argument("--big", type=Path, help="use this existing slide as the big one")
    parser.add_argument(
        "--child", nargs=3, metavar=("PATH", "PLUGIN", "GRID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        path, plugin, grid = args.child
        print(json.dumps(measure(Path(path), plugin, int(grid))))
        return
    if not os.environ.get("DISPLAY"):
        sys.exit('no display: run under xvfb-run -a -s "-screen 0 1600x1000x24"')
    quick = {"size": 8192, "baseline_size": 2048, "grid": 2}
    full = {"size": 50_000, "baseline_size": 8192, "grid": 8}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    data, tile_side = (QUICK_DATA, 2048) if args.quick else (DATA, 4096)

    if args.big:
        big, big_write = args.big, None
    elif args.render:
        big, big_write = ensure_slide(args.size, data)
    else:
        big, big_write = ensure_mosaic(args.size, tile_side, data)
    small, small_write = ensure_slide(args.baseline_size, data)
    results = {
        "write_s": {big.name: big_write, small.name: small_write},
        "runs": [
            run_child(big, "napari-patchwise", args.grid),
            run_child(small, "napari", args.grid),
            run_child(small, "napari-patchwise", args.grid),
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    name = "bench_open_quick.json" if args.quick else "bench_open.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print()
    print(
        "| reader | slide | first frame, warm (s) | first frame, cold (s) | peak RSS (MB) "
        "| pan steps | median step (s) | levels shown |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        shape = "x".join(str(s) for s in r["shape"][-2:])
        print(
            f"| {r['plugin']} | {shape} x {r['layers'] if r['layers'] > 1 else r['shape'][0]} "
            f"| {r['first_frame_s']} | {r['first_frame_cold_s']} | {r['peak_rss_mb']} "
            f"| {r['pan_steps']} "
            f"| {r['pan_step_median_s']} | {r['pan_levels_shown']} |"
        )


if __name__ == "__main__":
    main()
