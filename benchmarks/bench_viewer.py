"""Viewer benchmark: a tau / threshold slider change with 1,000,000 patches in a real viewer.

Run under Xvfb (software OpenGL)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_viewer.py

A 1000 x 1000 patch grid (64 px patches on a lazy 64000 x 64000 pyramid) with labels,
tissue ratios and probabilities is shown with the Patchwise dock. Measured, each as the
median over many changes:

* **plain repaint** of the scene (the baseline): ``canvas.native.update()`` + process
  events, counting vispy draw events to be sure a frame was rendered;
* **plugin work** of one slider change: ``slider.setValue`` returns after the overlay's
  contrast limits, the group counts and metrics and the table cells are updated; as wall
  time and as the main thread's CPU time (``time.thread_time``: on a loaded shared machine
  the wall time also counts waiting for a core);
* **change + repaint**: the same, followed by the same repaint (which also repaints the
  slider and the table). The histograms' throttled blit (at most every 120 ms while
  dragging) and the error list's debounced refresh (once the drag pauses) are kept out
  of this frame by stopping their timers, and measured on their own below: on a loaded
  machine one iteration here takes longer than those timers, which a real 60 Hz drag
  never does;
* for reference, **replace data + repaint**: what re-encoding tau into new layer data
  would cost (the approach the widget avoids).

Budget (issue 4): plugin work <= 5 ms; change + repaint <= 2 x plain repaint.

``--quick`` (what ``make bench`` runs): a 200 x 200 grid (40,000 patches), 5 changes per
slider; the same measures and table (the budget is about the full size).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import dask.array as da
import numpy as np
import pandas as pd


def synthetic_table(n_side: int, patch: int, seed: int = 0) -> pd.DataFrame:
    """A patch table of an ``n_side x n_side`` grid with a planted tissue/label correlation."""
    rng = np.random.default_rng(seed)
    n = n_side * n_side
    row, col = np.divmod(np.arange(n, dtype=np.int64), n_side)
    yy, xx = row / n_side - 0.5, col / n_side - 0.5
    tumor_zone = (yy**2 + (xx - 0.15) ** 2) < 0.06
    label = (tumor_zone & (rng.random(n) < 0.9)).astype(np.int8)
    tissue = np.clip(rng.beta(2, 2, n) - 0.25 * label + 0.1 * (1 - label), 0, 1)
    tissue = np.round(tissue * patch * patch) / (patch * patch)
    prob = np.clip(0.75 * label + 0.2 * tissue * (1 - label) + rng.normal(0.12, 0.12, n), 0, 1)
    n_pixels = np.full(n, patch * patch, dtype=np.int64)
    n_tissue = np.round(tissue * n_pixels).astype(np.int64)
    n_tumor = np.where(label == 1, np.maximum(1, n_tissue // 3), 0)
    return pd.DataFrame(
        {
            "slide": "bench",
            "row": row,
            "col": col,
            "y": row * patch,
            "x": col * patch,
            "height": patch,
            "width": patch,
            "n_pixels": n_pixels,
            "n_tumor": n_tumor,
            "n_healthy": n_tissue - n_tumor,
            "n_tissue": n_tissue,
            "label": label,
            "tumor_ratio": n_tumor / n_pixels,
            "tissue_ratio": n_tissue / n_pixels,
            "tumor_tissue_ratio": np.where(n_tissue > 0, n_tumor / np.maximum(n_tissue, 1), np.nan),
            "prob": prob,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=None, help="patches per side (1000)")
    parser.add_argument("--repeats", type=int, default=None, help="changes per slider (30)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    if args.side is None:
        args.side = 200 if args.quick else 1000
    if args.repeats is None:
        args.repeats = 5 if args.quick else 30

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.widget import PatchwiseWidget
    from napari_patchwise._napari.workers import prepare

    patch = 64
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    size = args.side * patch
    pyramid = [
        da.zeros((1, size >> k, size >> k), dtype=np.uint8, chunks=(1, 1024, 1024))[0]
        for k in range(int(np.log2(args.side)) + 1)
        if (size >> k) >= 512
    ]
    viewer.add_image(pyramid, name="bench", multiscale=True, contrast_limits=(0, 255))
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    app = QApplication.instance()

    t0 = time.perf_counter()
    table = synthetic_table(args.side, patch)
    result = prepare(table, (0, 0), patch)
    t_prepare = time.perf_counter() - t0
    state = widget.current
    widget._apply_result(state, result)
    while widget.busy():
        app.processEvents()
    overlays = state.overlays
    overlays.layers["groups"].visible = True
    overlays.layers["correctness"].visible = True
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)

    canvas = viewer.window._qt_viewer.canvas
    draws = [0]
    canvas._scene_canvas.events.draw.connect(lambda event: draws.__setitem__(0, draws[0] + 1))

    def repaint() -> None:
        before = draws[0]
        canvas.native.update()
        app.processEvents()
        assert draws[0] > before, "no frame was drawn"

    def stop_deferred() -> None:
        widget.tabs.histogram_timer.stop()
        widget.tabs.errors_timer.stop()

    def timed(step, values, clock=time.perf_counter) -> list[float]:
        out = []
        for v in values:
            t = clock()
            step(v)
            out.append(clock() - t)
        return out

    rng = np.random.default_rng(1)
    values = list(np.round(rng.uniform(0.02, 0.98, args.repeats), 3))
    repaint()
    # Plain repaints and slider changes are interleaved, so that the load of this shared
    # machine drifting during the run affects baseline and change alike.
    results: dict[str, list[float]] = {"plain repaint": []}
    sliders = (("tau", widget.tau_slider), ("threshold", widget.threshold_slider))
    for name, _ in sliders:
        results[f"{name}: plugin work"] = []
        results[f"{name}: plugin work (CPU)"] = []
        results[f"{name}: change + repaint"] = []
    for name, slider in sliders:
        slider.setValue(0.5)
        repaint()
        for v in values:
            results["plain repaint"] += timed(lambda _: repaint(), [v])
            results[f"{name}: plugin work"] += timed(slider.setValue, [v])
            results[f"{name}: plugin work (CPU)"] += timed(
                slider.setValue, [round(v + 0.001, 3)], clock=time.thread_time
            )
            stop_deferred()
            repaint()
            results[f"{name}: change + repaint"] += timed(
                lambda x, s=slider: (s.setValue(x + 0.0005), stop_deferred(), repaint()), [v]
            )
    results["histogram sync + repaint (throttled)"] = timed(
        lambda v: (widget.tabs.sync_histograms(), repaint()), values[:10]
    )
    # reference: re-encode tau into new layer data every change
    groups = overlays.layers["groups"]
    label = result.data.label
    ratio = result.data.attribute_values
    raster = result.data.raster

    def replace_data(v: float) -> None:
        groups.data = raster.paint((2 * label + (ratio >= v)).astype(np.float32))
        repaint()

    results["reference: replace data + repaint"] = timed(replace_data, values[:8])
    t = time.perf_counter()
    widget.tabs.refresh_errors()
    t_errors = time.perf_counter() - t

    base = statistics.median(results["plain repaint"])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"patches: {len(table):,} ({args.side} x {args.side} grid); prepare (worker) {t_prepare:.2f} s"
    )
    print(f"{'measure':38s} {'median ms':>10s} {'x plain repaint':>16s}")
    for name, times in results.items():
        med = statistics.median(times) * 1e3
        print(f"{name:38s} {med:10.2f} {med / (base * 1e3):16.2f}")
    print(f"error list refresh (debounced, once after dragging): {t_errors * 1e3:.1f} ms")
    # The main thread's CPU time is the plugin's cost; wall time on a loaded shared machine
    # adds the time spent waiting for a core.
    ok_work = all(
        statistics.median(results[f"{n}: plugin work (CPU)"]) <= 0.005 for n in ("tau", "threshold")
    )
    ok_ratio = all(
        statistics.median(results[f"{n}: change + repaint"]) <= 2 * base
        for n in ("tau", "threshold")
    )
    print(f"budget: plugin work (CPU) <= 5 ms: {'PASS' if ok_work else 'FAIL'}; "
          f"change + repaint <= 2x plain: {'PASS' if ok_ratio else 'FAIL'}")  # fmt: skip
    viewer.close()


if __name__ == "__main__":
    main()
