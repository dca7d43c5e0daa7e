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

from _protocol import Protocol, add_arguments, summarize

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


def measured(fn, results: dict, name: str | None):
    """A protocol case: run ``fn`` under :class:`PeakRSS`; keep its first result as
    ``results[name]`` for the checks (``None``: not kept). A result with ``"seconds"``
    (an extrapolated time) reports that instead of the call's wall time."""

    def call() -> dict:
        with PeakRSS() as mem:
            result = fn()
        if name is not None:
            results.setdefault(name, result)
        seconds = result.get("seconds") if isinstance(result, dict) else None
        return {"peak_mib": mem.peak_mb, **({"seconds": seconds} if seconds else {})}

    return call


def table(records: dict, floor: str, title: str) -> str:
    """Seconds (min / median over the repeats), x the floor's median, largest peak MiB."""
    floor_median = summarize({0: records[floor]})[0]
    lines = [title, "", "| step | seconds (min / median) | x floor (medians) | peak MiB (max) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name, recs in records.items():
        key = "seconds" if "seconds" in recs[0] else "wall_s"
        low, median = summarize({0: recs}, key)[0]
        peak = max(r["peak_mib"] for r in recs)
        lines.append(
            f"| {name} | {low:.2f} / {median:.2f} | {median / floor_median[1]:.2f} | {peak:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    return text


def ensure_slide(size: int, data: Path = DATA) -> tuple[Path, Path]:
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

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


def headless(patch: int, before: bool, protocol, quick: bool = False) -> None:
    """``patchwise stats`` on a single-level slide against the read-plus-numpy floor."""
    import os
    import tempfile

    import tifffile

    from napari_patchwise.cli.main import main as cli_main
    from napari_patchwise.io.tables import read_table

    data = QUICK_DATA if quick else DATA
    image_path, mask_path = ensure_single_level(*((2048, 2560) if quick else ()), data=data)
    work = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    cache = work / "cache"
    cache.mkdir()
    os.environ["PATCHWISE_CACHE_DIR"] = str(cache)
    inputs_before = sorted(data.iterdir())
    calls = {"stats": 0, "before": 0}

    def floor():
        return floor_counts(tifffile.imread(mask_path), patch)

    def stats() -> Path:
        calls["stats"] += 1
        out = work / "out" / f"t{calls['stats']}.parquet"
        rc = cli_main(["stats", str(image_path), "--mask", str(mask_path),
                       "--patch-size", str(patch), "--out", str(out), "--quiet"])  # fmt: skip
        assert rc == 0
        return out

    def old():
        from napari_patchwise.io import open_slide
        from napari_patchwise.patches.grid import PatchGrid, patch_stats

        calls["before"] += 1  # a fresh cache folder each call: the pyramid is rebuilt
        os.environ["PATCHWISE_CACHE_DIR"] = str(work / f"before-cache{calls['before']}")
        try:
            slide = open_slide(image_path, mask=mask_path)  # pyramid to the cache, value pass
            return patch_stats(slide, PatchGrid(patch))
        finally:
            os.environ["PATCHWISE_CACHE_DIR"] = str(cache)

    results: dict = {}
    floor_name = "floor: `tifffile.imread(mask)` + numpy reshape-sum"
    cases = {
        floor_name: measured(floor, results, "floor"),
        "`patchwise stats` (empty cache folder)": measured(stats, results, "stats"),
    }
    if before:
        cases["before: display pyramid + separate value pass"] = measured(old, results, "old")
    records = protocol.interleave(cases)
    written = sorted(
        p.relative_to(work) for p in work.rglob("*")
        if p.is_file() and not p.relative_to(work).parts[0].startswith("before-cache")
    )  # fmt: skip
    assert all(p.parts[0] == "out" for p in written) and not any(cache.iterdir()), written
    assert sorted(data.iterdir()) == inputs_before
    out_table, counts = read_table(results["stats"]), results["floor"]
    assert out_table["n_healthy"].tolist() == counts[0].ravel().tolist()
    assert out_table["n_tumor"].tolist() == counts[1].ravel().tolist()
    title = (
        f"`patchwise stats` on a single-level {tifffile.TiffFile(image_path).pages[0].shape} "
        f"image and its mask, patch {patch}, {len(out_table)} patches; nothing written "
        "outside `--out`, counts equal to the floor's"
    )
    text = table(records, floor_name, title)
    protocol.write({"headless.md": text}, {"patch": patch}, meta_name="headless.meta.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="slide side (20480; quick 4096)")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--loop-patches", type=int, default=None, help="(150; quick 30)")
    parser.add_argument("--intensity", action="store_true")
    parser.add_argument("--headless", action="store_true", help="time `patchwise stats` itself")
    parser.add_argument("--before", action="store_true", help="with --headless: the old path too")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    add_arguments(parser)  # --repeats, --results, --allow-loaded (_protocol.py)
    args = parser.parse_args()
    protocol = Protocol.from_args("bench_stats", args)  # refuses a loaded machine up front
    if args.headless:
        headless(args.patch, args.before, protocol, args.quick)
        return
    if args.size is None:
        args.size = 4096 if args.quick else 20480
    if args.loop_patches is None:
        args.loop_patches = 30 if args.quick else 150

    import dask
    import dask.array as da
    import tifffile

    from napari_patchwise.io import open_slide
    from napari_patchwise.patches.grid import PatchGrid, patch_stats

    image_path, mask_path = ensure_slide(args.size, QUICK_DATA if args.quick else DATA)
    p = args.patch
    grid = PatchGrid(p)
    slide = open_slide(image_path, mask=mask_path)
    print(f"slide {slide.shape} {slide.dtype}, mask {slide.mask.shape} ({slide.mask_kind}), "
          f"mask chunks {slide.mask.chunksize}, patch {p}, cores {psutil.cpu_count()}")  # fmt: skip
    # Loaded once, untimed: the in-memory inputs of the floor and of the in-memory case.
    mask_np = tifffile.imread(mask_path)
    assert mask_np.max() <= 2  # the synthetic mask is stored as classes 0/1/2
    mem_slide = slide.with_mask(da.from_array(mask_np, chunks=2048), kind=slide.mask_kind)
    n_rows, n_cols = grid.grid_shape(*mask_np.shape)
    # Straightforward loop: one lazy slice and compute per patch, on a subset.
    rng = np.random.default_rng(0)
    picks = rng.choice(n_rows * n_cols, size=min(args.loop_patches, n_rows * n_cols), replace=False)

    def loop():
        start, out = time.perf_counter(), []
        for k in picks:
            r, c = divmod(int(k), n_cols)
            patch = slide.mask[r * p : (r + 1) * p, c * p : (c + 1) * p]
            healthy, tumor = dask.compute((patch == 1).sum(), (patch == 2).sum())
            out.append((int(healthy), int(tumor)))
        seconds = (time.perf_counter() - start) / len(picks) * n_rows * n_cols
        return {"seconds": seconds, "counts": out}

    results: dict = {}
    floor_name = "floor: numpy `(mask == c).reshape(R, p, C, p).sum((1, 3))`, in memory"
    cases = {
        "`patch_stats`, lazy from the TIFF": lambda: patch_stats(slide, grid),
        "of which: the lazy mask alone, read + value mapping (`mask.max()`)": (
            lambda: slide.mask.max().compute()
        ),
        "reference: `tifffile.imread` of the whole mask": lambda: tifffile.imread(mask_path),
        "`patch_stats`, same mask already in memory (`da.from_array`)": (
            lambda: patch_stats(mem_slide, grid)
        ),
        floor_name: lambda: floor_counts(mask_np, p),
        f"per-patch loop (dask slice + compute per patch; {len(picks)} timed, extrapolated)": loop,
    }
    keys = ["disk", None, None, "mem", "floor", "loop"]  # the results kept for the checks
    records = protocol.interleave(
        {
            name: measured(fn, results, key)
            for (name, fn), key in zip(cases.items(), keys, strict=True)
        }
    )
    # The same counts from all of them.
    table_disk, floor = results["disk"], results["floor"]
    assert table_disk["n_healthy"].tolist() == floor[0].ravel().tolist()
    assert table_disk["n_tumor"].tolist() == floor[1].ravel().tolist()
    assert table_disk.equals(results["mem"])
    for (healthy, tumor), k in zip(results["loop"]["counts"], picks, strict=True):
        assert (healthy, tumor) == (table_disk["n_healthy"].iat[k], table_disk["n_tumor"].iat[k])
    title = (
        f"{n_rows * n_cols} patches of {p} x {p}; {mask_np.size / 1e6:.0f} Mpixel mask "
        f"({mask_np.nbytes / 2**20:.0f} MiB in memory), tissue from the mask"
    )
    files = {"stats.md": table(records, floor_name, title)}

    if args.intensity:
        threshold = 20.0
        img = np.asarray(slide.levels[0].compute())

        def floor_intensity():
            tissue = img.mean(axis=0, dtype=np.float32) > threshold
            code = np.where(mask_np == 2, 2, tissue.astype(np.uint8))
            return floor_counts(code, p)

        floor_int = "floor: intensity, numpy in memory"
        cases = {
            "`patch_stats`, tissue from intensity, lazy from the TIFF": measured(
                lambda: patch_stats(slide, grid, tissue="intensity", tissue_threshold=threshold),
                results, "int",
            ),
            floor_int: measured(floor_intensity, results, "int_floor"),
        }  # fmt: skip
        records = protocol.interleave(cases)
        assert results["int"]["n_healthy"].tolist() == results["int_floor"][0].ravel().tolist()
        del img
        title = "tissue from intensity (reads the 3 channels; x its own numpy floor)"
        files["stats_intensity.md"] = table(records, floor_int, title)
    protocol.write(files, {"size": args.size, "patch": p}, meta_name="stats.meta.json")


if __name__ == "__main__":
    main()
