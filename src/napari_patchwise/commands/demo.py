"""``patchwise demo``: a synthetic slide with its mask, opened in napari.

The demo writes (once, cached in ``--out``) a synthetic multimodal slide and its mask,
opens both through the plugin's reader, and either runs napari or -- with ``--no-gui``
-- renders the viewer under the current X display (Xvfb in ``make demo``) and saves
``screenshot.png``. :func:`build_demo_viewer` is where later capabilities add their
layers and widgets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._args import seed, synth_side

DEFAULT_OUT = "demo-output"
DEMO_SIZE = 4096
SCREEN = "-screen 0 1600x1000x24"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="open a synthetic slide and its mask in napari (or save a screenshot)",
        description="Write a synthetic CARS/TPEF/SHG slide with its tumor mask into --out "
        "(once), open it in napari through the Patchwise reader, and run napari; with "
        "--no-gui render the viewer under the X display (Xvfb) and save "
        "--out/screenshot.png instead.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    p.add_argument("--no-gui", action="store_true", help="save a screenshot and exit")
    p.add_argument("--size", type=synth_side, default=DEMO_SIZE, help=f"slide side ({DEMO_SIZE})")
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 or more (0)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import PatchwiseError

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if not args.no_gui:
            raise PatchwiseError(
                "no display to show napari on", hint="pass --no-gui to save a screenshot"
            )
        return _rerun_under_xvfb(args)

    out_dir = Path(args.out)
    image, mask = prepare_demo_data(out_dir, size=args.size, seed=args.seed)

    import napari

    viewer = napari.Viewer(title="napari-patchwise demo")
    viewer.window.resize(1400, 900)
    layers = build_demo_viewer(out_dir, viewer, image=image, mask=mask)
    # The Patchwise dock with the patch grid computed and rule-based predictions loaded.
    from .._napari.demo_view import open_patchwise_dock

    open_patchwise_dock(viewer, mask_layer=layers["mask"], wait=args.no_gui)
    if args.no_gui:
        path = save_screenshot(viewer, out_dir / "screenshot.png")
        viewer.close()
        print(path)
        return 0
    napari.run()
    return 0


def prepare_demo_data(out_dir: Path, *, size: int = DEMO_SIZE, seed: int = 0):
    """The demo slide and mask in ``out_dir``, written with a progress bar if missing."""
    from .._napari.sample import ensure_sample_slide
    from .._progress import tqdm_progress
    from ..synth import SynthConfig

    config = SynthConfig(size=(size, size), seed=seed, spurious=1.0)
    with tqdm_progress("demo slide", unit="‰") as progress:
        return ensure_sample_slide(out_dir, config, progress=progress)


def build_demo_viewer(out_dir: Path, viewer, *, image: Path, mask: Path) -> dict:
    """Open the demo slide (one layer per channel) and its mask (Labels) in ``viewer``.

    Returns the layers by role so later additions (overlays, the dock widget) can use
    them: ``{"channels": [...], "mask": Labels}``.
    """
    from .._napari.layer_slide import align_mask_layer

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
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    return path


def _rerun_under_xvfb(args: argparse.Namespace) -> int:
    """No display: run this same command again inside a virtual X server."""
    from ..errors import PatchwiseError

    xvfb = shutil.which("xvfb-run")
    if xvfb is None or os.environ.get(_UNDER_XVFB):
        raise PatchwiseError(
            "no display and no xvfb-run to render the viewer",
            hint="install xvfb (apt-get install xvfb xauth) or run `make demo`",
        )
    cmd = [xvfb, "-a", "-s", SCREEN, sys.executable, "-m", "napari_patchwise.cli", "demo"]
    cmd += ["--out", str(args.out), "--no-gui", "--size", str(args.size), "--seed", str(args.seed)]
    return subprocess.call(cmd, env={**os.environ, _UNDER_XVFB: "1"})


# Set in the re-run, so a virtual X server that fails to start cannot loop.
_UNDER_XVFB = "PATCHWISE_DEMO_UNDER_XVFB"
