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

The slide is generated once into benchmarks/_data/ (git-ignored) with the project's
synthetic-slide writer.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
import psutil

DATA = Path(__file__).parent / "_data"


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


def ensure_slide(size: int) -> tuple[Path, Path]:
    from napari_patchwise.synth import SynthConfig, write_synthetic_slide

    image = DATA / f"bench_{size}.ome.tif"
    mask = DATA / f"bench_{size}_mask.tif"
    if not (image.exists() and mask.exists()):
        print(f"generating {image} ({size} x {size} x 3) ...", flush=True)
        write_synthetic_slide(image, mask, SynthConfig(size=(size, size), seed=1, chunk=2048))
    return image, mask


def floor_counts(mask: np.ndarray, p: int) -> np.ndarray:
    r, c = mask.shape[0] // p, mask.shape[1] // p
    m = mask[: r * p, : c * p]
    return np.stack([(m == cls).reshape(r, p, c, p).sum(axis=(1, 3)) for cls in (1, 2)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20480)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--loop-patches", type=int, default=150)
    parser.add_argument("--intensity", action="store_true")
    args = parser.parse_args()

    import dask
    import dask.array as da

    from napari_patchwise.grid import PatchGrid, patch_stats
    from napari_patchwise.io import open_slide

    image_path, mask_path = ensure_slide(args.size)
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
