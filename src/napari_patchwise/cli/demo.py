"""``patchwise demo``: the tool's story in one command.

The demo synthesises a small planted-bias cohort, trains ERM and GERNE on it with the
``cpu-quick`` recipe, predicts a test slide with both (:mod:`napari_patchwise.training.demo_story`,
cached in ``--out``: a second demo reuses what it trained), opens the test slide in
napari with both runs' predictions and the comparison view ready, and writes
``report.html`` (Table 1 with both selections, per-group accuracies, learning curves,
Figure 1 and the viewer's overlays of both runs). With ``--no-gui`` it renders the viewer
under the X display (Xvfb in ``make demo``), saves ``screenshot.png`` and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import PatchwiseError
from ..training.runs import read_metrics
from ._args import positive_int, seed, synth_side

DEFAULT_OUT = "demo-output"
DEMO_SIZE = 2048
DEMO_STEPS = 200
SCREEN = "-screen 0 1600x1000x24"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="train ERM and GERNE on a synthetic cohort and compare them in napari",
        description="Synthesise a planted-bias cohort (6 slides) into --out, train ERM and "
        "GERNE on it (cpu-quick recipe, a minute or two on a CPU), predict a test slide with "
        "both, write --out/report.html and open napari with both runs compared; with "
        "--no-gui render the viewer under the X display (Xvfb) and save "
        "--out/screenshot.png instead. A second run reuses what the first trained.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    p.add_argument("--no-gui", action="store_true", help="save screenshots and exit")
    p.add_argument("--size", type=synth_side, default=DEMO_SIZE, help=f"slide side ({DEMO_SIZE})")
    p.add_argument(
        "--steps", type=positive_int, default=DEMO_STEPS, help=f"training steps ({DEMO_STEPS})"
    )
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 or more (0)")
    return p


def run(args: argparse.Namespace) -> int:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if not args.no_gui:
            raise PatchwiseError(
                "no display to show napari on", hint="pass --no-gui to save a screenshot"
            )
        return _rerun_under_xvfb(args)

    out_dir = Path(args.out)
    story = prepare_story(out_dir, args)

    import napari

    from .._napari.dock.demo_view import show_story

    viewer = napari.Viewer(title="napari-patchwise demo")
    viewer.window.resize(1400, 900)
    layers = build_demo_viewer(out_dir, viewer, image=story.test_image, mask=story.test_mask)
    _, images = show_story(viewer, story, mask_layer=layers["mask"], images=out_dir / "images")
    report = write_story_report(story, images)
    print(f"report: {report}", file=sys.stderr)
    if args.no_gui:
        path = save_screenshot(viewer, out_dir / "screenshot.png")
        viewer.close()
        print(path)
        return 0
    napari.run()
    return 0


def prepare_story(out_dir: Path, args: argparse.Namespace):
    """Run :func:`~napari_patchwise.training.demo_story.run_story` with one progress bar per stage."""
    from ..training.demo_story import StorySettings, run_story

    eval_every = min(StorySettings.eval_every, args.steps)  # at least one evaluation
    settings = StorySettings(
        size=args.size, seed=args.seed, steps=args.steps, eval_every=eval_every
    )
    with _StageBars() as bars:
        return run_story(out_dir, settings, progress=bars, log=bars.write)


def write_story_report(story, images: dict[str, Path]) -> Path:
    """``report.html`` of the demo's two runs, with the viewer's overlays of both."""
    from ..reporting.html import write_report

    wga = {}
    for name, run in story.runs.items():
        test = read_metrics(run)["by_selection"]["val_wga"]["test"]
        wga[name] = 100 * test["wga"]
    intro = [
        "The patchwise demo: six synthetic slides in which large dense tissue goes with "
        "tumor (planted spurious correlation, strength 0.7), ERM and GERNE trained with the "
        "cpu-quick recipe at tau = 0.1, each seeing the same number of patches.",
        f"Worst-group test accuracy (selected by validation WGA): ERM {wga['erm']:.1f} %, "
        f"GERNE {wga['gerne']:.1f} %.",
    ]
    captions = {
        "erm": "ERM on the test slide: correct (TP/TN) and wrong (FP/FN) patches",
        "gerne": "GERNE on the same slide",
        "compare": "ERM (A) against GERNE (B): both right, both wrong, only ERM right, "
        "only GERNE right",
    }
    shots = [(captions[k], path) for k, path in images.items() if k in captions]
    return write_report(
        [story.runs["erm"], story.runs["gerne"]],
        story.folder / "report.html",
        intro=intro,
        images=shots,
    )


class _StageBars:
    """``bars(stage, done, total)``: one tqdm bar per stage, closed when it completes."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __enter__(self) -> _StageBars:
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(desc=stage, total=total, file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def write(self, line: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)


def build_demo_viewer(out_dir: Path, viewer, *, image: Path, mask: Path) -> dict:
    """Open the demo slide (one layer per channel) and its mask (Labels) in ``viewer``.

    Returns the layers by role so later additions (overlays, the dock widget) can use
    them: ``{"channels": [...], "mask": Labels}``.
    """
    from .._napari.reader.layer_slide import align_mask_layer

    channels = viewer.open(image, plugin="napari-patchwise")
    (mask_layer,) = viewer.open(mask, plugin="napari-patchwise")
    mask_layer.opacity = 0.3  # the tissue textures stay visible under the classes
    align_mask_layer(mask_layer, channels[0])  # the slide's world coordinates
    viewer.reset_view()
    return {"channels": channels, "mask": mask_layer, "out_dir": out_dir}


def save_screenshot(viewer, path: Path) -> Path:
    """Render the whole window (canvas, layer list, controls) into ``path``."""
    from qtpy.QtWidgets import QApplication

    # Let napari load the visible tiles and lay the window out before grabbing it.
    for _ in range(10):
        QApplication.processEvents()
    # a saved picture has no one to answer a toast (the reader's offer): it would cover
    # the canvas
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    return path


def _rerun_under_xvfb(args: argparse.Namespace) -> int:
    """No display: run this same command again inside a virtual X server."""

    xvfb = shutil.which("xvfb-run")
    if xvfb is None or os.environ.get(_UNDER_XVFB):
        raise PatchwiseError(
            "no display and no xvfb-run to render the viewer",
            hint="install xvfb (apt-get install xvfb xauth) or run `make demo`",
        )
    cmd = [xvfb, "-a", "-s", SCREEN, sys.executable, "-m", "napari_patchwise.cli.main", "demo"]
    cmd += ["--out", str(args.out), "--no-gui", "--size", str(args.size), "--seed", str(args.seed)]
    cmd += ["--steps", str(args.steps)]
    return subprocess.call(cmd, env={**os.environ, _UNDER_XVFB: "1"})


# Set in the re-run, so a virtual X server that fails to start cannot loop.
_UNDER_XVFB = "PATCHWISE_DEMO_UNDER_XVFB"
