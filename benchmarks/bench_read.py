"""Reader benchmarks: building a display pyramid once, and checking mask values.

1. A single-level (unpyramidal) tiled TIFF bigger than the cache threshold gets its coarser
   levels written once. ``staged_pyramid`` computes each level from the previous *stored*
   level; the baseline hands the chained lazy ``build_pyramid`` levels straight to the
   writer, which recomputes every level from level 0. Reported: wall time, level-0 tiles
   decoded, peak RSS.
2. Mask value check (``mask_values``: per-chunk bincount) against ``dask.array.unique``
   over the same lazily read mask.
3. With ``--open-side N``: ``open_slide`` on an N x N x 3 pyramidal OME-TIFF (sparse
   content, so it writes fast), its contrast limits and one 1024 px region of level 0,
   beside ``tifffile.imread`` of the smallest stored level (the least any viewer reads).
4. With ``--stream FILE...``: reader throughput, streaming level 0 of each file once
   (``level.max().compute()``) through the direct tile reader (``io._tiles``) and through
   the previous path (tifffile's zarr store, ``aszarr``), against ``tifffile.imread`` of
   the whole level (baseline: tifffile's own multi-threaded decode); and the latency of
   512 x 512 regions at random places (what napari asks for when panning). ``--chunk-sides``
   repeats the direct reader with other dask chunk sides than its default (about 4 MiB
   per chunk). Best of ``--repeats`` runs.
5. With ``--stats IMAGE MASK``: ``grid.patch_stats`` from disk through the previous path
   (zarr store reader, searchsorted mask mapping), with only the mapping replaced, and
   through the current one, against a numpy reshape-sum over the mask in memory.

``--quick`` (what ``make bench`` runs): a 2048 px image, a 4096 px pyramid to open, one
repeat, and the streaming and ``patch_stats`` comparisons on the 2048 px image and mask
(all in a temporary folder).

Run:  .venv/bin/python benchmarks/bench_read.py [--side 4096] [--open-side 50000] [--quick]
      .venv/bin/python benchmarks/bench_read.py --side 0 \
          --stream benchmarks/_data/bench_20480_mask.tif benchmarks/_data/bench_20480.ome.tif \
          --stats benchmarks/_data/bench_20480.ome.tif benchmarks/_data/bench_20480_mask.tif
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import psutil
import tifffile


class PeakRSS:
    """Sample this process's resident memory every 20 ms."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


class TileReads:
    """Count tiles decoded from files with a given image height (direct reader)."""

    def __init__(self):
        from napari_patchwise.io._tiles import TiffLevelView

        self.counts: dict[int, int] = {}
        original = TiffLevelView._segment

        def segment(view, page, index):
            h = view.shape[1]
            self.counts[h] = self.counts.get(h, 0) + 1
            return original(view, page, index)

        TiffLevelView._segment = segment


def make_image(path: Path, side: int) -> None:
    """A textured single-level 3-channel uint8 tiled TIFF, written tile row by tile row."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:side]

    # Built in 512-row bands (the whole image is only a few hundred MB at the default size).
    data = np.empty((3, side, side), np.uint8)
    for y0 in range(0, side, 512):
        base = (np.sin((yy + y0) / 37.0) * np.cos(xx / 53.0) * 100 + 120).astype(np.uint8)
        noise = rng.integers(0, 20, size=(3, 512, side), dtype=np.uint8)
        data[:, y0 : y0 + 512] = np.stack([base, base[:, ::-1], 255 - base]) // 2 + noise
    tifffile.imwrite(path, data, tile=(512, 512), compression="zlib", photometric="minisblack")
    del data


def bench_pyramid(path: Path, out: Path, reads: TileReads) -> dict:
    from napari_patchwise.io.pyramid import build_pyramid
    from napari_patchwise.io.pyramid_cache import write_pyramid
    from napari_patchwise.io.tiff import read_tiff
    from napari_patchwise.io.write import write_ome_tiff

    level0 = read_tiff(path).levels[0]
    side = level0.shape[-1]
    results = {}
    for name in ("chained (baseline)", "staged"):
        target = out / f"{name.split()[0]}.ome.tif"
        reads.counts.clear()
        t0 = time.perf_counter()
        with PeakRSS() as rss:
            if name == "staged":
                write_pyramid(target, level0, channel_names=["a", "b", "c"], pixel_size=None)
            else:
                levels = build_pyramid(level0)[1:]
                write_ome_tiff(target, levels, channel_names=["a", "b", "c"])
        results[name] = {
            "seconds": time.perf_counter() - t0,
            "level0_tiles_decoded": reads.counts.get(side, 0),
            "peak_extra_rss_mb": rss.extra_mb,
        }
    a = read_tiff(out / "chained.ome.tif").levels
    b = read_tiff(out / "staged.ome.tif").levels
    assert all(
        np.array_equal(x[:, :256, :256].compute(), y[:, :256, :256].compute())
        for x, y in zip(a, b, strict=True)
    )
    return results


def bench_mask_values(path: Path) -> dict:
    from napari_patchwise.io.mask import mask_values
    from napari_patchwise.io.tiff import read_tiff

    labels = read_tiff(path).levels[0][0]
    results = {}
    for name, fn in (
        ("dask.array.unique (baseline)", lambda: np.asarray(da.unique(labels).compute())),
        ("mask_values (per-chunk bincount)", lambda: mask_values(labels)),
    ):
        t0 = time.perf_counter()
        with PeakRSS() as rss:
            values = fn()
        results[name] = {
            "seconds": time.perf_counter() - t0,
            "values": values.tolist(),
            "peak_extra_rss_mb": rss.extra_mb,
        }
    return results


def write_sparse_pyramid(path: Path, side: int, tile: int = 512) -> None:
    """Pyramidal tiled OME-TIFF whose tiles are one repeated sparse pattern."""
    pattern = np.zeros((tile, tile), np.uint8)
    pattern[::7, ::5] = 90
    sides = [side]
    while sides[-1] // 2 >= 256:
        sides.append(sides[-1] // 2)

    def tiles(s):
        for _ in range(3 * (-(-s // tile)) ** 2):
            yield pattern

    options = {"dtype": np.uint8, "tile": (tile, tile), "compression": "zlib"}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(
            tiles(side),
            shape=(3, side, side),
            subifds=len(sides) - 1,
            metadata={"axes": "CYX"},
            **options,
        )
        for s in sides[1:]:
            tw.write(tiles(s), shape=(3, s, s), subfiletype=1, **options)


def bench_open(path: Path) -> dict:
    from napari_patchwise.io import open_slide

    t0 = time.perf_counter()
    smallest = tifffile.imread(path, level=-1)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    slide = open_slide(path)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    slide.display_contrast_limits()
    t_limits = time.perf_counter() - t0
    _, h, w = slide.shape
    t0 = time.perf_counter()
    slide.levels[0][:, h // 2 : h // 2 + 1024, w // 2 : w // 2 + 1024].compute()
    t_region = time.perf_counter() - t0
    return {
        f"tifffile.imread smallest level {smallest.shape} (baseline)": {"seconds": t_base},
        "open_slide": {"seconds": t_open, "levels": len(slide.levels)},
        "display_contrast_limits (smallest level)": {"seconds": t_limits},
        "1024 x 1024 region of level 0": {"seconds": t_region},
    }


@contextlib.contextmanager
def reader(path_kind: str, chunk_side: int | None = None):
    """Read TIFF levels through ``"direct"`` tiles or the previous ``"zarr"`` store path,
    optionally with another dask chunk side (``None``: the reader's default)."""
    from napari_patchwise.io import _layout, tiff
    from napari_patchwise.io._tiles import UnsupportedLayout

    def no_direct(*args, **kwargs):
        raise UnsupportedLayout("benchmark baseline: zarr store")

    saved = tiff.TiffLevelView, _layout.tile_chunk_side
    if path_kind == "zarr":
        tiff.TiffLevelView = no_direct
    if chunk_side:
        _layout.tile_chunk_side = lambda bytes_per_pixel: chunk_side
    try:
        yield
    finally:
        tiff.TiffLevelView, _layout.tile_chunk_side = saved


def bench_stream(path: Path, repeats: int, chunk_sides: list[int]) -> dict:
    from napari_patchwise.io.tiff import read_tiff

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_imread = best(lambda: tifffile.imread(path))
    results = {"tifffile.imread whole level (baseline)": {"seconds": t_imread}}
    # The previous reader used 1024 px chunks whatever the dtype.
    paths = [("zarr", 1024, "threads"), ("direct", None, "threads"), ("direct", None, "sync")]
    paths += [("direct", c, "threads") for c in chunk_sides]
    levels = {}
    for kind, side, scheduler in paths:
        with reader(kind, side):
            level = read_tiff(path).levels[0]
        name = f"{kind} reader, {level.chunksize[1]} px chunks, dask {scheduler}"
        if name in levels:
            continue
        levels[name] = level
        t = best(lambda level=level, s=scheduler: level.max().compute(scheduler=s))
        results[name] = {"seconds": t, "x imread": t / t_imread}
    # Region latency, interleaved over the readers so machine load hits them alike.
    _, h, w = level.shape
    rng = np.random.default_rng(0)
    lat: dict[str, list[float]] = {name: [] for name in levels if "threads" in name}
    for y, x in zip(rng.integers(0, h - 512, 24), rng.integers(0, w - 512, 24), strict=True):
        for name in lat:
            t0 = time.perf_counter()
            levels[name][:, y : y + 512, x : x + 512].compute()
            lat[name].append(time.perf_counter() - t0)
    for name, times in lat.items():
        results[name]["region_512_median_ms"] = 1000 * statistics.median(times)
    return results


def searchsorted_map_values(labels, keys, classes):
    """The mask value mapping before the lookup table (a searchsorted pass per pixel)."""
    index = np.searchsorted(keys, labels).clip(0, len(keys) - 1)
    return classes[index]


def bench_stats(image: Path, mask: Path, repeats: int, patch: int = 256) -> dict:
    """``patch_stats`` from disk through the previous and the current read path."""
    from napari_patchwise.io import mask as mask_module
    from napari_patchwise.io import open_slide
    from napari_patchwise.patches.grid import PatchGrid, patch_stats

    grid = PatchGrid(patch)
    labels = tifffile.imread(mask)
    r, c = labels.shape[0] // patch, labels.shape[1] // patch

    def floor():  # one vectorised numpy pass over the mask already in memory
        m = labels[: r * patch, : c * patch]
        return [(m == k).reshape(r, patch, c, patch).sum(axis=(1, 3)) for k in (1, 2)]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_floor = best(floor)
    results = {"floor: numpy reshape-sum, mask in memory": {"seconds": t_floor}}
    mapper = mask_module.map_values
    for name, kind, mapping in (
        ("previous: zarr store reader + searchsorted mapping", "zarr", searchsorted_map_values),
        ("previous reader + lookup-table mapping", "zarr", mapper),
        ("current: direct tile reader + lookup-table mapping", "direct", mapper),
    ):
        # The mapping function goes into the mask's dask graph when the slide is opened.
        mask_module.map_values = mapping
        try:
            with reader(kind, 1024 if kind == "zarr" else None):
                slide = open_slide(image, mask=mask)
        finally:
            mask_module.map_values = mapper
        t = best(lambda slide=slide: patch_stats(slide, grid))
        results[name] = {"seconds": t, "x floor": t / t_floor}
    return results


def print_results(title: str, results: dict, width: int, digits: int = 2) -> None:
    print(f"\n{title}")
    for name, r in results.items():
        extras = ", ".join(
            f"{k}={v:.{digits}f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
        )
        print(f"  {name:{width}s} {extras}", flush=True)


def run_stream_and_stats(stream: list[Path], stats, repeats: int, chunk_sides: list[int]) -> None:
    for path in stream:
        shape = tifffile.TiffFile(path).series[0].levels[0].shape
        results = bench_stream(path, repeats, chunk_sides)
        print_results(f"streaming level 0 of {path} ({shape})", results, 44)
    if stats:
        image, mask = stats
        title = f"patch_stats (256 px patches, tissue from the mask) of {image.name} + {mask.name}"
        print_results(title, bench_stats(image, mask, repeats), 52)


def write_inputs(tmp: Path, side: int) -> None:
    """The single-level image and a 3-class mask of the same size, in ``tmp``."""
    t0 = time.perf_counter()
    make_image(tmp / "single.tif", side)
    rng = np.random.default_rng(1)
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : side // 2, side // 4 : side // 2] = 1
    mask[side // 3 : side // 2, side // 3 : side // 2] = 2
    mask[rng.integers(0, side, 50), rng.integers(0, side, 50)] = 2
    tifffile.imwrite(tmp / "mask.tif", mask, tile=(512, 512), compression="zlib")
    print(
        f"inputs: {side} x {side} x 3 uint8 single-level TIFF + mask ({time.perf_counter() - t0:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=None, help="(4096; quick 2048)")
    parser.add_argument(
        "--open-side", type=int, default=None, help="also time opening N x N x 3 (quick 4096)"
    )
    parser.add_argument("--stream", type=Path, nargs="*", default=[], help="TIFFs to stream")
    parser.add_argument("--chunk-sides", type=int, nargs="*", default=[])
    parser.add_argument("--repeats", type=int, default=None, help="(2; quick 1)")
    parser.add_argument("--stats", type=Path, nargs=2, metavar=("IMAGE", "MASK"))
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    quick = {"side": 2048, "open_side": 4096, "repeats": 1}
    full = {"side": 4096, "open_side": 0, "repeats": 2}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    run_stream_and_stats(args.stream, args.stats, args.repeats, args.chunk_sides)
    side = args.side
    if not side:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_inputs(tmp, side)
        reads = TileReads()
        pyramid = bench_pyramid(tmp / "single.tif", tmp, reads)
        print_results("display pyramid, levels 1.. written once", pyramid, 34)
        print_results("mask value check", bench_mask_values(tmp / "mask.tif"), 34)
        if args.open_side:
            t0 = time.perf_counter()
            write_sparse_pyramid(tmp / "big.ome.tif", args.open_side)
            n, written = args.open_side, time.perf_counter() - t0
            title = f"opening a {n} x {n} x 3 pyramidal OME-TIFF (written in {written:.0f} s)"
            print_results(title, bench_open(tmp / "big.ome.tif"), 34, digits=3)
        if args.quick and not (args.stream or args.stats):
            # The streaming and patch_stats comparisons too, on the small inputs above.
            single, mask = tmp / "single.tif", tmp / "mask.tif"
            run_stream_and_stats([mask, single], (single, mask), args.repeats, args.chunk_sides)


if __name__ == "__main__":
    main()
