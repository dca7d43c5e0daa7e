"""Compare-tab benchmark: a threshold / tau move with two runs compared, 1,000,000 patches.

Run under Xvfb (software OpenGL)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_compare.py

The 1000 x 1000 patch grid of ``bench_viewer.py`` (64 px patches on a lazy pyramid) is
shown in the Patchwise dock with run A's predictions; run B is A plus noise. Measured in
the same run, each the median over many moves (plain repaints interleaved):

* **plain repaint** of the scene (the baseline);
* **dock only**: threshold moves before any comparison is shown (the dock's own overlays
  move by contrast limits only): a jump to a random value and a drag step of 0.004, as
  plugin work (``slider.setValue`` returning) and with the repaint;
* **compared**: the same moves once the Compare tab shows A vs B (the comparison layer's
  classes recomputed where they can change, in place, and the layer refreshed); a tau
  move; the list refresh (debounced: once a drag pauses); and the worker's preparation.

``--quick`` (what ``make bench`` runs): a 200 x 200 grid, 5 moves per measure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_viewer import synthetic_table  # the same grid as the viewer benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=None, help="patches per side (1000)")
    parser.add_argument("--repeats", type=int, default=None, help="moves per measure (20)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    args.side = args.side or (200 if args.quick else 1000)
    args.repeats = args.repeats or (5 if args.quick else 20)

    from qtpy.QtWidgets import QApplication

    import napari
    from napari_patchwise._napari.dock.widget import PatchwiseWidget
    from napari_patchwise._napari.jobs.grid_work import prepare

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
    table = synthetic_table(args.side, patch)
    widget._apply_result(widget.current, prepare(table, (0, 0), patch))
    while widget.busy():
        app.processEvents()
    viewer.reset_view()

    canvas = viewer.window._qt_viewer.canvas
    draws = [0]
    canvas._scene_canvas.events.draw.connect(lambda event: draws.__setitem__(0, draws[0] + 1))

    def repaint() -> None:
        before = draws[0]
        canvas.native.update()
        app.processEvents()
        assert draws[0] > before, "no frame was drawn"

    box = widget.compare_box

    def stop_deferred() -> None:
        for timer in (widget.tabs.histogram_timer, widget.tabs.errors_timer, box.list_timer):
            timer.stop()

    def timed(step, values) -> list[float]:
        out = []
        for v in values:
            t = time.perf_counter()
            step(v)
            out.append(time.perf_counter() - t)
        return out

    rng = np.random.default_rng(1)
    values = [float(v) for v in np.round(rng.uniform(0.02, 0.98, args.repeats), 3)]
    slider, tau = widget.threshold_slider, widget.tau_slider
    # a drag: small steps (0.004, about one pixel of a 250 px slider) from 0.3 upwards
    steps = [round(0.3 + 0.004 * i, 3) for i in range(1, args.repeats + 1)]

    def move(s, v):
        s.setValue(v)
        stop_deferred()

    def measure(prefix: str) -> None:
        results[f"{prefix}: plain repaint"] = []
        for key in ("plugin work", "move + repaint", "drag step", "drag step + repaint"):
            results[f"{prefix}: threshold {key}"] = []
        for v in values:
            results[f"{prefix}: plain repaint"] += timed(lambda _: repaint(), [v])
            results[f"{prefix}: threshold plugin work"] += timed(lambda x: move(slider, x), [v])
            results[f"{prefix}: threshold move + repaint"] += timed(
                lambda x: (move(slider, x + 0.0005), repaint()), [v]
            )
        move(slider, 0.3)
        for v in steps:
            results[f"{prefix}: threshold drag step"] += timed(lambda x: move(slider, x), [v])
            repaint()
        move(slider, 0.3)
        for v in steps:
            results[f"{prefix}: threshold drag step + repaint"] += timed(
                lambda x: (move(slider, x), repaint()), [v]
            )

    results: dict[str, list[float]] = {}
    repaint()
    measure("dock only")

    with tempfile.TemporaryDirectory() as tmp:
        keys = table[["slide", "row", "col"]]
        keys.assign(prob=table["prob"]).to_parquet(Path(tmp) / "a.parquet")
        noise = rng.normal(0, 0.25, len(table))
        keys.assign(prob=np.clip(table["prob"] + noise, 0, 1)).to_parquet(Path(tmp) / "b.parquet")
        t0 = time.perf_counter()
        box.load_tables(Path(tmp) / "a.parquet", Path(tmp) / "b.parquet", names=("A", "B"))
        box.wait()
        t_load = time.perf_counter() - t0
    while box.busy():
        app.processEvents()
    repaint()
    measure("compared")
    results["compared: tau move + repaint"] = timed(lambda x: (move(tau, x), repaint()), values)
    results["compared: list refresh (debounced)"] = timed(lambda _: box.refresh_list(), values[:5])

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"patches: {len(table):,} ({args.side} x {args.side}); compare load {t_load:.2f} s")
    print(f"{'measure':42s} {'median ms':>10s} {'x plain repaint':>16s}")
    for name, times in results.items():
        # each phase against its own plain repaint (the comparison adds a layer to draw)
        base = statistics.median(results[name.split(":")[0] + ": plain repaint"])
        med = statistics.median(times) * 1e3
        print(f"{name:42s} {med:10.2f} {med / (base * 1e3):16.2f}")
    viewer.close()


if __name__ == "__main__":
    main()
