"""Opening and panning a huge slide in napari; vendor slides against other readers.

Follows the benchmark protocol (``_protocol.py``, docs/benchmarks.md "Protocol"): every
comparison interleaved in an order that rotates between ``--repeats`` (5) repeats, min and
median, load average recorded, refused docs/ on a loaded machine (``--allow-loaded``).

**Opening** (each call a fresh napari process under the current X display; run under
``xvfb-run``):

* Patchwise reader, synthetic 50k x 50k x 3 pyramidal OME-TIFF: time from
  ``viewer.open`` to the first rendered frame (cold: the session's first file; warm: a
  second open), and peak resident memory (RSS) while the camera, zoomed to full
  resolution (one data pixel per screen pixel, pyramid level 0), steps over a grid of
  positions spanning the whole slide with a draw at every step.
* Baseline, same run: napari's built-in reader on a smaller slide (8k x 8k x 3, which it
  loads whole into memory), and the Patchwise reader on that same smaller slide.

Targets (docs/benchmarks.md, "Budgets"): first frame < 2 s, peak RSS < 1.5 GB. Writes
``opening.md``, ``opening.json`` and ``opening.meta.json`` into ``docs/results/bench_open/``.
The slides are generated once into ``benchmarks/_data/`` (git-ignored).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_open.py

**Vendor slides and other readers** (same run after the opening part; ``--formats`` runs
only this part, ``--opening`` leaves it out, ``--no-viewer`` leaves out its napari runs; needs the ``wsi`` and
``bench`` extras): one brightfield RGB slide (``--wsi-size``: 20000 px, 8192 quick)
written as an Aperio SVS (256 px JPEG tiles, levels 1, 4, 16, ...; ``_slides.py``) and,
with the same pixels, as an OME-Zarr. Headless, all readers in this process, interleaved:
open, first frame (open + the whole level a 1400 x 900 screen shows at fit-to-window),
median of 48 random 512 px level-0 regions read one by one, and 48 other regions read by
1, 2, 4 and 8 threads; every batch's pixels compared across readers. The readers:
Patchwise's default SVS path (``io.read_region`` on ``open_slide``'s level), the same SVS
forced through its tifffile path, the same levels sliced through dask
(``patchwise-dask``: what a dask user or napari's multichannel layers get), raw
OpenSlide and tiffslide ``read_region``, Patchwise on the OME-Zarr (``read_region`` and
dask) and napari-ome-zarr's dask levels. In napari (fresh processes, as above): the SVS through Patchwise, the
OME-Zarr through Patchwise and through napari-ome-zarr, and the pan baseline of issue 23:
napari's built-in image layer on the SVS's level 0 held in memory (one ``rgb=True``
layer, loaded before the clock starts; ``in-memory-rgb``). Writes ``regions.md``,
``goals.md`` (issue 23's targets as ratios), ``viewer.md``, ``formats.json`` and
``formats.meta.json``.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_open.py \
        --formats --wsi-size 20000

``--quick`` (what ``make bench`` runs): an 8192 px mosaic of a 2048 px slide, a 2048 px
baseline slide, 2 x 2 pan positions, an 8192 px SVS / OME-Zarr, 2 repeats; the same
tables, in ``benchmarks/_results/bench_open_quick/``. Its slides are kept in
``benchmarks/_data/quick/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _protocol import Protocol, add_arguments, fmt_pair, summarize
from _slides import write_periodic_svs

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
QUICK_DATA = DATA / "quick"  # small inputs of --quick, apart from the full-size ones


def ensure_slide(size: int, data: Path = DATA) -> tuple[Path, float | None]:
    """The synthetic slide of side ``size`` (written if missing) and its write time."""
    from napari_patchwise._progress import tqdm_progress
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

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
    from napari_patchwise.synthetic.slides import CHANNEL_NAMES

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


#: Pseudo-plugin of the pan baseline: napari's own image layer, the pixels in memory.
IN_MEMORY_RGB = "in-memory-rgb"


def open_layers(viewer, path: Path, plugin: str, memory: dict) -> list:
    """``viewer.open`` with ``plugin``; for :data:`IN_MEMORY_RGB`, level 0 of the slide
    read into memory (once, in ``memory``, outside the timing) as one RGB layer."""
    if plugin != IN_MEMORY_RGB:
        return viewer.open(str(path), plugin=plugin)
    if "rgb" not in memory:
        import numpy as np

        from napari_patchwise.io import open_slide

        slide = open_slide(path, pyramid_cache=False)
        memory["rgb"] = np.ascontiguousarray(np.moveaxis(slide.levels[0].compute(), 0, -1))
        memory["scale"] = slide.pixel_size or (1.0, 1.0)
    return [viewer.add_image(memory["rgb"], rgb=True, scale=memory["scale"], name=path.stem)]


def measure(path: Path, plugin: str, grid: int) -> dict:
    """In this process: open ``path`` with ``plugin``, draw, pan at level 0, report."""
    import numpy as np
    from qtpy.QtWidgets import QApplication

    import napari

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
    import napari_patchwise._napari.reader.layers  # noqa: F401

    memory: dict = {}
    if plugin == IN_MEMORY_RGB:  # the baseline's pixels are in memory before the clock
        open_layers(viewer, path, plugin, memory)
        viewer.layers.clear()
    with PeakRSS() as rss:
        # Cold: the first file of the session (the reader's own imports included).
        start = time.perf_counter()
        open_layers(viewer, path, plugin, memory)
        draw()
        first_frame_cold = time.perf_counter() - start
        viewer.layers.clear()
        # Warm: opening a slide in a running session (what the < 2 s target is about).
        start = time.perf_counter()
        layers = open_layers(viewer, path, plugin, memory)
        shot = draw()
        first_frame = time.perf_counter() - start
        lit_first = float((shot[..., :3].max(axis=-1) > 40).mean())

        # Full resolution: one data pixel per screen pixel.
        layer = layers[0]
        scale = float(layer.scale[-1])
        viewer.camera.zoom = 1.0 / scale
        level0 = layer.data[0] if layer.multiscale else layer.data
        height, width = (int(s) for s in (level0.shape[-3:-1] if layer.rgb else level0.shape[-2:]))
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


VIEWER_MEASURES = (  # (record key, column, scale, digits); times min / median
    ("first_frame_s", "first frame, warm (s)", 1, 3),
    ("first_frame_cold_s", "first frame, cold (s)", 1, 3),
    ("peak_rss_mb", "peak RSS (MB), median / max", 1, 0),  # a memory budget: the worst
    ("pan_step_median_s", "median level-0 pan step (s)", 1, 3),
)


def viewer_cases(runs: list[tuple[Path, str]], grid: int) -> dict:
    """One protocol case per (slide, napari reader): a fresh napari process each call."""
    return {
        f"{plugin} | {path.name}": (lambda path=path, plugin=plugin: run_child(path, plugin, grid))
        for path, plugin in runs
    }


def viewer_table(records: dict) -> str:
    """Min / median over the repeats of each viewer measure, one row per case."""
    head = "| napari reader | slide | " + " | ".join(c for _, c, _, _ in VIEWER_MEASURES)
    lines = [head + " | levels shown |", "|---|---|" + "---:|" * len(VIEWER_MEASURES) + "---|"]
    for case, recs in records.items():
        cells = [fmt_pair(summarize({case: recs}, key)[case], scale, digits)
                 for key, _, scale, digits in VIEWER_MEASURES]  # fmt: skip
        rss = [r["peak_rss_mb"] for r in recs]
        cells[2] = f"{statistics.median(rss):.0f} / {max(rss):.0f}"
        levels = sorted({lvl for r in recs for lvl in r["pan_levels_shown"]})
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {levels} |")
    return "\n".join(lines) + "\n"


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
        "--formats", action="store_true", help="only the vendor/other-reader comparison"
    )
    parser.add_argument(
        "--opening", action="store_true", help="only the 50k opening part (no --formats part)"
    )
    parser.add_argument("--wsi-size", type=int, default=None, help="SVS/OME-Zarr side (20000)")
    parser.add_argument(
        "--no-viewer", action="store_true", help="--formats without its napari runs"
    )
    add_arguments(parser)
    parser.add_argument(
        "--child", nargs=3, metavar=("PATH", "PLUGIN", "GRID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        path, plugin, grid = args.child
        print(json.dumps(measure(Path(path), plugin, int(grid))))
        return
    if not os.environ.get("DISPLAY") and not (args.formats and args.no_viewer):
        sys.exit('no display: run under xvfb-run -a -s "-screen 0 1600x1000x24"')
    quick = {"size": 8192, "baseline_size": 2048, "grid": 2, "wsi_size": 8192}
    full = {"size": 50_000, "baseline_size": 8192, "grid": 8, "wsi_size": 20_000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    protocol = Protocol.from_args("bench_open", args)  # refuses a loaded machine up front
    data, tile_side = (QUICK_DATA, 2048) if args.quick else (DATA, 4096)
    if args.formats:
        compare_formats(args, data, protocol)
        return

    if args.big:
        big, big_write = args.big, None
    elif args.render:
        big, big_write = ensure_slide(args.size, data)
    else:
        big, big_write = ensure_mosaic(args.size, tile_side, data)
    small, small_write = ensure_slide(args.baseline_size, data)
    runs = [(big, "napari-patchwise"), (small, "napari"), (small, "napari-patchwise")]
    records = protocol.interleave(viewer_cases(runs, args.grid), progress=_progress)
    table = viewer_table(records)
    print(table)
    protocol.write(
        {"opening.md": table, "opening.json": json.dumps(records, indent=1)},
        {"write_s": {big.name: big_write, small.name: small_write}, "grid": args.grid},
        meta_name="opening.meta.json",
    )
    if not args.opening:
        compare_formats(args, data, protocol)


def _progress(repeat: int, case: str) -> None:
    print(f"repeat {repeat + 1}: {case}", file=sys.stderr, flush=True)


# -- vendor slides and other readers --------------------------------------------------
SCREEN = (900, 1400)  # the canvas a first frame fills (y, x)
REGION, N_REGIONS, THREADS = 512, 48, (1, 2, 4, 8)
READER_IMPORTS = {  # imported before the clock starts (import time reported apart)
    "patchwise": ("napari_patchwise.io", "openslide", "zarr"),
    "patchwise-tifffile": ("napari_patchwise.io.tiff",),
    "patchwise-dask": ("napari_patchwise.io", "openslide", "zarr"),
    "openslide": ("openslide",),
    "tiffslide": ("tiffslide",),
    "napari-ome-zarr": ("napari_ome_zarr._reader",),
}
REGION_READERS = {
    "svs": ("patchwise", "patchwise-tifffile", "patchwise-dask", "openslide", "tiffslide"),
    "zarr": ("patchwise", "patchwise-dask", "napari-ome-zarr"),
}


def ensure_wsi(size: int, data: Path) -> tuple[Path, Path, dict]:
    """An Aperio SVS of brightfield tissue and an OME-Zarr of the same pixels (if missing).

    The tissue is scikit-image's immunohistochemistry sample mirrored into a seamless
    1024 px block and repeated, so every level is exact (level k = the block subsampled
    by 4**k, repeated) and written tile by tile in bounded memory.
    """
    import dask.array as da

    from napari_patchwise.io import open_slide
    from napari_patchwise.io.write import write_ome_zarr

    svs, zarr_path = data / f"wsi{size}.svs", data / f"wsi{size}.ome.zarr"
    times: dict = {svs.name: None, zarr_path.name: None}
    if not svs.is_file():
        data.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        write_periodic_svs(svs, size)
        times[svs.name] = round(time.perf_counter() - start, 1)
    if not zarr_path.exists():
        start = time.perf_counter()
        slide = open_slide(svs, pyramid=False)
        levels = [lvl.rechunk({0: -1, 1: 1024, 2: 1024}) for lvl in slide.levels]
        write_ome_zarr(zarr_path, [da.asarray(lvl) for lvl in levels], pixel_size=0.25)
        times[zarr_path.name] = round(time.perf_counter() - start, 1)
    return svs, zarr_path, times


def _open_reader(reader: str, path: Path):
    """``(read(level, y, x, h, w) -> (h, w, C) array, level sizes [(h, w)], downsamples)``."""
    import numpy as np

    if reader in ("openslide", "tiffslide"):
        module = __import__(reader)
        handle = (module.OpenSlide if reader == "openslide" else module.TiffSlide)(str(path))
        sizes = [(h, w) for w, h in handle.level_dimensions]
        downs = [float(d) for d in handle.level_downsamples]

        def read(level, y, x, h, w):
            corner = (round(x * downs[level]), round(y * downs[level]))
            return np.asarray(handle.read_region(corner, level, (w, h)))[..., :3]

        return read, sizes, downs
    if reader == "napari-ome-zarr":
        import contextlib
        import io

        from napari_ome_zarr._reader import napari_get_reader

        with contextlib.redirect_stdout(io.StringIO()):  # it prints the zarr attributes
            layer_data = napari_get_reader(str(path))(str(path))
        levels, kwargs = layer_data[0][0], layer_data[0][1]
        if kwargs.get("channel_axis", 0) != 0:
            raise RuntimeError("expected the channel axis first")
    else:
        if reader == "patchwise-tifffile":  # the SVS as a plain TIFF (no OpenSlide)
            from napari_patchwise.io.tiff import read_tiff

            levels = read_tiff(path).levels
        else:
            from napari_patchwise.io import open_slide

            levels = list(open_slide(path, pyramid=False).levels)
    sizes = [tuple(int(s) for s in lvl.shape[1:]) for lvl in levels]
    downs = [sizes[0][0] / s[0] for s in sizes]

    if reader in ("napari-ome-zarr", "patchwise-dask"):  # a dask slice, as napari takes it

        def read(level, y, x, h, w):
            # slice the (C, Y, X) level first: dask fuses the slice into the file read
            region = levels[level][:, y : y + h, x : x + w].compute(scheduler="threads")
            return np.asarray(region).transpose(1, 2, 0)

        return read, sizes, downs

    from napari_patchwise.io import read_region

    def read(level, y, x, h, w):  # the library's region read (io.read_region)
        return read_region(levels[level], (y, y + h), (x, x + w), channels_last=True)

    return read, sizes, downs


def _corners(size: tuple[int, int], seed: tuple[int, int]) -> list[tuple[int, int]]:
    """``N_REGIONS`` random level-0 corners; the same for every reader given ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = size
    return [
        (int(rng.integers(0, h - REGION)), int(rng.integers(0, w - REGION)))
        for _ in range(N_REGIONS)
    ]


def _digest(regions) -> str:
    import hashlib

    import numpy as np

    sha = hashlib.sha1()
    for region in regions:
        sha.update(np.ascontiguousarray(region).tobytes())
    return sha.hexdigest()[:12]


def region_case(reader: str, path: Path, digests: dict) -> callable:
    """One protocol case: ``reader`` on ``path``, fresh handles, every measure of a repeat.

    Each call opens the file anew (open, then the whole fit-to-window level: first frame),
    reads ``N_REGIONS`` random 512 px level-0 regions one after the other (their median),
    then for each thread count opens a fresh handle (untimed) and reads another
    ``N_REGIONS`` regions with that many threads (batch time). The corners depend on the
    repeat and the measure only, so every reader reads the same regions, and no measure
    rereads what a previous one decoded. Digests of every batch go into ``digests`` for
    the pixel-equality check across readers.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    repeat = [0]

    def run() -> dict:
        r = repeat[0]
        repeat[0] += 1
        start = time.perf_counter()
        read, sizes, _ = _open_reader(reader, path)
        opened = time.perf_counter() - start
        # Fit to window: the coarsest level still at least as big as the screen's side.
        fit = max(i for i, s in enumerate(sizes) if max(s) >= max(SCREEN) or i == 0)
        read(fit, 0, 0, *sizes[fit])
        out = {"open_s": opened, "first_frame_s": time.perf_counter() - start}
        times, regions = [], []
        for y, x in _corners(sizes[0], (r, 0)):
            t = time.perf_counter()
            regions.append(read(0, y, x, REGION, REGION))
            times.append(time.perf_counter() - t)
        out["region_median_s"] = float(np.median(times))
        digests.setdefault((r, 0), {})[f"{reader} | {path.name}"] = _digest(regions)
        for threads in THREADS:
            read, _, _ = _open_reader(reader, path)
            corners = _corners(sizes[0], (r, threads))
            start = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                regions = list(pool.map(lambda c, read=read: read(0, *c, REGION, REGION), corners))
            out[f"threads_{threads}_s"] = time.perf_counter() - start
            digests.setdefault((r, threads), {})[f"{reader} | {path.name}"] = _digest(regions)
        return out

    return run


def region_table(records: dict, equal: dict) -> str:
    """Min / median over the repeats, one row per reader and file."""
    cols = ["open (s)", "first frame (s)", f"region {REGION}² (ms)"]
    cols += [f"{t} thread{'s' * (t > 1)}, {N_REGIONS} regions (s)" for t in THREADS]
    lines = [
        "| reader | file | " + " | ".join(cols) + " | pixels equal |",
        "|---|---|" + "---:|" * len(cols) + "---|",
    ]
    keys = [("open_s", 1, 3), ("first_frame_s", 1, 3), ("region_median_s", 1e3, 1)]
    keys += [(f"threads_{t}_s", 1, 3) for t in THREADS]
    for case, recs in records.items():
        cells = [fmt_pair(summarize({case: recs}, k)[case], s, d) for k, s, d in keys]
        same = "yes" if equal[case] else "**NO**"
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {same} |")
    return "\n".join(lines) + "\n"


# The targets (docs/benchmarks.md): (case, measure, baseline case, goal ratio).
GOALS = (
    ("patchwise | svs", "region_median_s", "tiffslide | svs", 1.0),
    ("patchwise | svs", "region_median_s", "openslide | svs", 0.8),
    ("patchwise | svs", f"threads_{max(THREADS)}_s", "openslide | svs", 1.0),
    ("patchwise | zarr", f"threads_{max(THREADS)}_s", "napari-ome-zarr | zarr", 0.6),
    ("napari: napari-patchwise | svs", "pan_step_median_s", f"napari: {IN_MEMORY_RGB} | svs", 1.5),
)


MEASURE_NAMES = {"region_median_s": f"region {REGION}² median"}
MEASURE_NAMES["pan_step_median_s"] = "napari level-0 pan step, median"
MEASURE_NAMES.update({f"threads_{t}_s": f"{t} threads, {N_REGIONS} regions" for t in THREADS})


def goals_table(records: dict) -> str:
    """Each target as a ratio of medians (and of mins) against its same-run baseline."""
    lines = [
        "| reader | file | measure | against (same file) | ratio of medians | ratio of mins "
        "| goal | met |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    by_kind = {_kind(case): case for case in records}
    for case, key, base, goal in GOALS:
        if case not in by_kind or base not in by_kind:
            continue
        ours = summarize({0: records[by_kind[case]]}, key)[0]
        theirs = summarize({0: records[by_kind[base]]}, key)[0]
        if ours is None or theirs is None:  # a measure this run did not take
            continue
        medians, mins = ours[1] / theirs[1], ours[0] / theirs[0]
        met = "yes" if medians <= goal else "no"
        lines.append(
            f"| {by_kind[case]} | {MEASURE_NAMES[key]} | {base.split(' | ')[0]} "
            f"| {medians:.2f} | {mins:.2f} | <= {goal} | {met} |"
        )
    return "\n".join(lines) + "\n"


def _majority(per: dict) -> str:
    values = list(per.values())
    return max(set(values), key=values.count)


def _kind(case: str) -> str:
    """``"patchwise | wsi8192.svs"`` -> ``"patchwise | svs"``."""
    reader, name = case.split(" | ")
    return f"{reader} | {'zarr' if name.endswith('.zarr') else 'svs'}"


def compare_formats(args: argparse.Namespace, data: Path, protocol: Protocol) -> None:
    """The SVS / OME-Zarr comparison (regions in this process, napari in children)."""
    import importlib.util

    def installed(reader: str) -> bool:
        return all(importlib.util.find_spec(m.split(".")[0]) for m in READER_IMPORTS[reader])

    if not installed("patchwise"):
        print("vendor slides skipped: install the 'wsi' extra (openslide-python, openslide-bin)")
        return
    missing = sorted({r for rs in REGION_READERS.values() for r in rs if not installed(r)})
    if missing:
        print(f"not installed, left out: {', '.join(missing)} (pip install '.[bench]')")
    svs, zarr_path, written = ensure_wsi(args.wsi_size, data)
    imported = {}
    for reader in sorted({r for rs in REGION_READERS.values() for r in rs if installed(r)}):
        start = time.perf_counter()  # imports apart: later readers share earlier imports
        for module in READER_IMPORTS[reader]:
            __import__(module)
        imported[reader] = round(time.perf_counter() - start, 3)
    cases, digests = {}, {}
    for kind, path in (("svs", svs), ("zarr", zarr_path)):
        for reader in REGION_READERS[kind]:
            if installed(reader):
                cases[f"{reader} | {path.name}"] = region_case(reader, path, digests)
    records = protocol.interleave(cases, progress=_progress)
    # Every reader, both files, every repeat and thread count: the same pixels as the
    # majority (a reader that differs is named; the SVS's JPEG tiles decode identically).
    equal = {case: all(per[case] == _majority(per) for per in digests.values()) for case in cases}
    files = {"regions.md": region_table(records, equal)}
    if not args.no_viewer:
        runs = [(svs, "napari-patchwise"), (svs, IN_MEMORY_RGB), (zarr_path, "napari-patchwise")]
        if installed("napari-ome-zarr"):
            runs.append((zarr_path, "napari-ome-zarr"))
        viewer = protocol.interleave(viewer_cases(runs, args.grid), progress=_progress)
        files["viewer.md"] = viewer_table(viewer)
        records = {**records, **{f"napari: {k}": v for k, v in viewer.items()}}
    files["goals.md"] = goals_table(records)
    files["formats.json"] = json.dumps(records, indent=1)
    for name, text in files.items():
        if name.endswith(".md"):
            print(f"{name}:\n{text}")
    per_set = {
        f"repeat {r}, threads {t}": sorted(set(per.values())) for (r, t), per in digests.items()
    }
    extra = {"write_s": written, "import_s": imported, "wsi_size": args.wsi_size}
    protocol.write(files, {**extra, "digests": per_set}, meta_name="formats.meta.json")
    if not all(equal.values()):
        sys.exit("readers disagree on pixels: see formats.meta.json's digests")


if __name__ == "__main__":
    main()
