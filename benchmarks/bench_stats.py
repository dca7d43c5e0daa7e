"""Patch-statistics benchmark on a synthetic 20k x 20k x 3 tiled OME-TIFF.

Compares, in the same run:

* ``patch_stats`` on the slide as opened from disk (lazy, tile by tile: includes reading
  and decompressing the TIFF tiles);
* ``patch_stats`` on the same mask already in memory (wrapped with ``da.from_array``),
  to separate I/O from counting;
* the floor: one vectorised numpy pass over the mask already in memory
  (``(mask == c).reshape(R, p, C, p).sum((1, 3))`` for healthy and tumor);
* a straightforward per-patch loop over the lazy slide (one dask slice + compute per
  patch), timed on a subset of patches and extrapolated.

Optionally (``--intensity``) the same for tissue from intensity (reads all three channels).
Peak memory is the largest resident-set size sampled every 10 ms during each step, minus
the resident size just before it.

    .venv/bin/python benchmarks/bench_stats.py [--size 20480] [--patch 256] [--intensity]

``--headless`` times the ``patchwise stats`` command itself on a *single-level* tiled
16384 x 20480 x 3 TIFF and its mask, with an empty cache folder, against the
read-plus-numpy floor of the same run (``tifffile.imread`` of the mask + the reshape-sum),
and checks that nothing is written outside ``--out``; ``--before`` adds the previous
behaviour (display pyramid written to the cache, mask values checked in a separate pass).

    .venv/bin/python benchmarks/bench_stats.py --headless [--before]

The slide is generated once into benchmarks/_data/ (git-ignored) with the project's
synthetic-slide writer.

``--quick`` (what ``make bench`` runs, with and without ``--headless``): the same steps and
table on small inputs (a 4096 x 4096 slide, 30 looped patches; a 2048 x 2560 single-level
slide with ``--headless``), generated once into benchmarks/_data/quick/ so they never
replace the full-size files.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
import psutil

DATA = Path(__file__).parent / "_data"
QUICK_DATA = DATA / "quick"  # small inputs of --quick, apart from the full-size ones


class PeakRSS:
    """Sample this process's resident memory in a thread; report the peak above start."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.process = psutil.Process()

    def __enter__(self) -> PeakRSS:
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def timed(fn):
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    return result, seconds, mem.peak_mb


def ensure_slide(size: int, data: Path = DATA) -> tuple[Path, Path]:
    from napari_patchwise.synth import SynthConfig, write_synthetic_slide

    image = data / f"bench_{size}.ome.tif"
    mask = data / f"bench_{size}_mask.tif"
    if not (image.exists() and mask.exists()):
        print(f"generating {image} ({size} x {size} x 3) ...", flush=True)
        data.mkdir(parents=True, exist_ok=True)
        write_synthetic_slide(image, mask, SynthConfig(size=(size, size), seed=1, chunk=2048))
    return image, mask


def floor_counts(mask: np.ndarray, p: int) -> np.ndarray:
    r, c = mask.shape[0] // p, mask.shape[1] // p
    m = mask[: r * p, : c * p]
    return np.stack([(m == cls).reshape(r, p, c, p).sum(axis=(1, 3)) for cls in (1, 2)])


def ensure_single_level(
    height: int = 16384, width: int = 20480, data: Path = DATA
) -> tuple[Path, Path]:
    """A single-level tiled image (3 x uint8) and 3-class mask, written tile by tile.

    The mask is blobs of tissue with tumor inside (a smooth random field, thresholded);
    the image is the mask's classes with noise. Only the mask is read by ``stats`` with
    tissue from the mask, so the image's content does not matter here; its size does
    (the old path built a display pyramid from it).
    """
    import tifffile

    image_path = data / f"single_{height}x{width}.tif"
    mask_path = data / f"single_{height}x{width}_mask.tif"
    if image_path.exists() and mask_path.exists():
        return image_path, mask_path
    data.mkdir(parents=True, exist_ok=True)
    print(f"generating {image_path} ({height} x {width} x 3, single level) ...", flush=True)
    rng = np.random.default_rng(3)
    coarse = rng.random((height // 512 + 2, width // 512 + 2))
    tile = 512

    def mask_tile(y: int, x: int) -> np.ndarray:
        ys = (np.arange(y, y + tile) / 512.0)[:, None]
        xs = (np.arange(x, x + tile) / 512.0)[None, :]
        y0, x0 = ys.astype(int), xs.astype(int)
        fy, fx = ys - y0, xs - x0
        field = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx)
                 + coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)  # fmt: skip
        return np.select([field > 0.75, field > 0.45], [2, 1], 0).astype(np.uint8)

    def tiles(channels: int):
        for c in range(channels):
            for y in range(0, height, tile):
                for x in range(0, width, tile):
                    m = mask_tile(y, x)
                    if channels == 1:
                        yield m
                    else:
                        noise = rng.integers(0, 30, m.shape, dtype=np.uint8)
                        yield (m * (60 + 20 * c)).astype(np.uint8) + noise

    tifffile.imwrite(mask_path, tiles(1), shape=(height, width), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib")  # fmt: skip
    tifffile.imwrite(image_path, tiles(3), shape=(3, height, width), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib", photometric="minisblack",
                     planarconfig="separate")  # fmt: skip
    return image_path, mask_path


def headless(patch: int, before: bool, quick: bool = False) -> None:
    """``patchwise stats`` on a single-level slide against the read-plus-numpy floor."""
    import os
    import tempfile

    import tifffile

    from napari_patchwise.cli import main as cli_main
    from napari_patchwise.io.tables import read_table

    data = QUICK_DATA if quick else DATA
    image_path, mask_path = ensure_single_level(*((2048, 2560) if quick else ()), data=data)
    work = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    cache = work / "cache"
    cache.mkdir()
    os.environ["PATCHWISE_CACHE_DIR"] = str(cache)
    inputs_before = sorted(data.iterdir())
    rows = []

    def floor():
        return floor_counts(tifffile.imread(mask_path), patch)

    def stats(name: str) -> Path:
        out = work / "out" / name
        rc = cli_main(["stats", str(image_path), "--mask", str(mask_path),
                       "--patch-size", str(patch), "--out", str(out), "--quiet"])  # fmt: skip
        assert rc == 0
        return out

    counts, t_floor, m_floor = timed(floor)
    rows.append(("floor: tifffile.imread(mask) + numpy reshape-sum", t_floor, m_floor))
    out, t_cli, m_cli = timed(lambda: stats("t.parquet"))
    rows.append(("patchwise stats (empty cache folder)", t_cli, m_cli))
    written = sorted(p.relative_to(work) for p in work.rglob("*") if p.is_file())
    assert written == [Path("out/t.parquet")], written
    assert sorted(data.iterdir()) == inputs_before
    table = read_table(out)
    assert table["n_healthy"].tolist() == counts[0].ravel().tolist()
    assert table["n_tumor"].tolist() == counts[1].ravel().tolist()
    _, t_floor2, m_floor2 = timed(floor)
    rows.append(("floor again (noise check)", t_floor2, m_floor2))
    if before:
        from napari_patchwise.grid import PatchGrid, patch_stats
        from napari_patchwise.io import open_slide

        def old():
            slide = open_slide(image_path, mask=mask_path)  # pyramid to the cache, value pass
            return patch_stats(slide, PatchGrid(patch))

        _, t_old, m_old = timed(old)
        rows.append(("before: display pyramid + separate value pass", t_old, m_old))
        cached = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
        print(f"before: wrote {cached / 2**20:.0f} MiB into the cache folder")
    floor_best = min(t_floor, t_floor2)
    print(f"\n{tifffile.TiffFile(image_path).pages[0].shape} image, mask "
          f"{tifffile.TiffFile(mask_path).pages[0].shape}, patch {patch}, {len(table)} patches")  # fmt: skip
    print(f"{'step':52}{'seconds':>9}{'x floor':>9}{'peak MiB':>10}")
    for name, seconds, peak in rows:
        print(f"{name:52}{seconds:>9.2f}{seconds / floor_best:>9.2f}{peak:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="slide side (20480; quick 4096)")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--loop-patches", type=int, default=None, help="(150; quick 30)")
    parser.add_argument("--intensity", action="store_true")
    parser.add_argument("--headless", action="store_true", help="time `patchwise stats` itself")
    parser.add_argument("--before", action="store_true", help="with --headless: the old path too")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    if args.headless:
        headless(args.patch, args.before, args.quick)
        return
    if args.size is None:
        args.size = 4096 if args.quick else 20480
    if args.loop_patches is None:
        args.loop_patches = 30 if args.quick else 150

    import dask
    import dask.array as da

    from napari_patchwise.grid import PatchGrid, patch_stats
    from napari_patchwise.io import open_slide

    image_path, mask_path = ensure_slide(args.size, QUICK_DATA if args.quick else DATA)
    p = args.patch
    grid = PatchGrid(p)
    slide = open_slide(image_path, mask=mask_path)
    print(f"slide {slide.shape} {slide.dtype}, mask {slide.mask.shape} ({slide.mask_kind}), "
          f"mask chunks {slide.mask.chunksize}, patch {p}, cores {psutil.cpu_count()}")  # fmt: skip
    rows = []

    table, t_disk, m_disk = timed(lambda: patch_stats(slide, grid))
    rows.append(("patch_stats, lazy from the TIFF", t_disk, m_disk))

    # Attribution: how long the lazy mask (reading the tiles + mapping values to classes)
    # needs to stream once, and tifffile's own whole-file decode for reference.
    _, t_read, m_read = timed(lambda: slide.mask.max().compute())
    rows.append(("  of which: lazy mask alone (mask.max())", t_read, m_read))
    import tifffile

    mask_np, t_imread, m_imread = timed(lambda: tifffile.imread(mask_path))
    rows.append(("  reference: tifffile.imread whole mask", t_imread, m_imread))
    assert mask_np.max() <= 2  # the synthetic mask is stored as classes 0/1/2
    mem_slide = slide.with_mask(da.from_array(mask_np, chunks=2048), kind=slide.mask_kind)
    table_mem, t_mem, m_mem = timed(lambda: patch_stats(mem_slide, grid))
    rows.append(("patch_stats, mask in memory", t_mem, m_mem))

    floor, t_floor, m_floor = timed(lambda: floor_counts(mask_np, p))
    rows.append(("floor: numpy reshape-sum in memory", t_floor, m_floor))

    # The same counts from all three.
    n_rows, n_cols = grid.grid_shape(*mask_np.shape)
    assert table["n_healthy"].tolist() == floor[0].ravel().tolist()
    assert table["n_tumor"].tolist() == floor[1].ravel().tolist()
    assert table.equals(table_mem)

    # Straightforward loop: one lazy slice and compute per patch, on a subset.
    rng = np.random.default_rng(0)
    picks = rng.choice(n_rows * n_cols, size=min(args.loop_patches, n_rows * n_cols), replace=False)

    def loop():
        out = []
        for k in picks:
            r, c = divmod(int(k), n_cols)
            patch = slide.mask[r * p : (r + 1) * p, c * p : (c + 1) * p]
            healthy, tumor = dask.compute((patch == 1).sum(), (patch == 2).sum())
            out.append((int(healthy), int(tumor)))
        return out

    looped, t_loop, m_loop = timed(loop)
    for (healthy, tumor), k in zip(looped, picks, strict=True):
        assert (healthy, tumor) == (table["n_healthy"].iat[k], table["n_tumor"].iat[k])
    t_loop_all = t_loop / len(picks) * n_rows * n_cols
    rows.append((f"per-patch loop (extrapolated from {len(picks)})", t_loop_all, m_loop))

    if args.intensity:
        threshold = 20.0
        t_int = timed(lambda: patch_stats(slide, grid, tissue="intensity",
                                          tissue_threshold=threshold))  # fmt: skip
        intensity_rows = [("patch_stats, intensity tissue, lazy", t_int[1], t_int[2])]
        img = np.asarray(slide.levels[0].compute())

        def floor_intensity():
            tissue = img.mean(axis=0, dtype=np.float32) > threshold
            code = np.where(mask_np == 2, 2, tissue.astype(np.uint8))
            return floor_counts(code, p)

        f_int = timed(floor_intensity)
        intensity_rows.append(("floor: intensity, numpy in memory", f_int[1], f_int[2]))
        assert t_int[0]["n_healthy"].tolist() == f_int[0][0].ravel().tolist()
        del img

    print(f"\n{n_rows * n_cols} patches of {p} x {p}; "
          f"{mask_np.size / 1e6:.0f} Mpixel mask ({mask_np.nbytes / 2**20:.0f} MiB in memory)")  # fmt: skip
    print(f"{'step':48}{'seconds':>9}{'x floor':>9}{'peak MiB':>10}")
    for name, seconds, peak in rows:
        print(f"{name:48}{seconds:>9.2f}{seconds / t_floor:>9.2f}{peak:>10.0f}")
    if args.intensity:
        print("tissue from intensity (reads the 3 channels; x its own numpy floor):")
        for name, seconds, peak in intensity_rows:
            print(f"{name:48}{seconds:>9.2f}{seconds / f_int[1]:>9.2f}{peak:>10.0f}")


if __name__ == "__main__":
    main()
