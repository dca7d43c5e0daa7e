"""``patchwise view``: open a slide in napari with the Patchwise dock and its overlays.

With ``--table`` the patch table (``patchwise stats`` or ``predict`` output, with or
without ``prob``) is shown as it is; otherwise the patch grid is computed with
``--patch-size``. ``--session`` reopens a session the dock saved (docs/sessions.md)
instead. ``--screenshot`` renders the window (e.g. under Xvfb) and exits.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..errors import PatchwiseError
from ..groups import DEFAULT_TAU
from ..io.mask import as_mask_map
from ..io.reader import slide_name
from ..io.tables import read_table
from ..schema import DEFAULT_THRESHOLD, TABLE_COLUMNS
from ..settings import DEFAULT_PATCH_SIZE
from ._args import pixels, probability
from .demo import save_screenshot


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "view",
        help="open a slide in napari with the Patchwise overlays and dock",
        description="Open IMAGE (and its MASK) in napari through the Patchwise reader, dock "
        "the Patchwise widget and show a patch table: TABLE if given, else one computed "
        "with --patch-size. Or reopen a saved session: --session FILE.",
    )
    p.add_argument(
        "image",
        type=Path,
        nargs="?",
        help="slide (OME-TIFF/TIFF, OME-Zarr, PNG/JPEG, SVS/NDPI/MRXS/..., DICOM WSI folder)",
    )
    p.add_argument(
        "--session",
        type=Path,
        metavar="FILE",
        help="reopen a session saved in the dock (*.patchwise-session.json): its slides, "
        "masks, settings, sliders, predictions and comparison; instead of IMAGE",
    )
    p.add_argument(
        "--mask", type=Path, help="tumor mask of the slide (label image or QuPath .geojson)"
    )
    p.add_argument(
        "--mask-map",
        metavar="SPEC",
        help="value -> class of the mask: 0=background,1=healthy,2=tumor (default), "
        "'binary' (0=background,1=tumor), e.g. 0=background,255=tumor, or GeoJSON class "
        "names: Tumor=tumor,Stroma=healthy",
    )
    p.add_argument("--table", type=Path, help="patch table (parquet/CSV) of the slide")
    p.add_argument(
        "--patch-size",
        type=pixels,
        default=DEFAULT_PATCH_SIZE,
        help=f"patch size to compute ({DEFAULT_PATCH_SIZE})",
    )
    p.add_argument(
        "--tau",
        type=probability,
        default=DEFAULT_TAU,
        help=f"tissue-size threshold ({DEFAULT_TAU})",
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=DEFAULT_THRESHOLD,
        help=f"decision threshold ({DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--overlay",
        choices=("groups", "outcome", "probability", "labels", "comparison", "none"),
        help="the patch overlay shown, with its legend (default: outcome with predictions, "
        "else groups)",
    )
    p.add_argument("--screenshot", type=Path, help="save a window screenshot here and exit")
    return p


def run(args: argparse.Namespace) -> int:
    if args.session is not None:
        return _run_session(args)
    if args.image is None:
        raise PatchwiseError("name a slide to open (IMAGE) or a session (--session FILE)")
    for path in (args.image, args.mask, args.table):
        if path is not None and not path.exists():
            raise PatchwiseError("no such file", path=path, hint="check the path")

    mask_map = as_mask_map(args.mask_map)  # a bad spec: one line, exit 2, before Qt loads
    table = grid = None
    if args.table is not None:
        # Check the table before starting napari: a wrong one is a one-line error, exit 2.
        from ..patches.predictions import slide_rows
        from ..patches.table import read_table_metadata

        table = read_table(args.table, required=TABLE_COLUMNS)
        grid = (read_table_metadata(args.table) or (None,))[0]  # the grid the file records
        slide_rows(
            table, slide_name(args.image), source=args.table, hint="pass the table of this image"
        )
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise PatchwiseError(
            "no display to show napari on", hint="run it under xvfb-run with --screenshot"
        )

    import napari

    from .._napari.dock.demo_view import wait_until_idle
    from .._napari.dock.widget import PatchwiseWidget
    from .._napari.reader.layer_slide import align_mask_layer

    viewer = napari.Viewer(title=f"patchwise view {args.image.name}")
    viewer.window.resize(1500, 950)
    image_layers = viewer.open(args.image, plugin="napari-patchwise")
    mask_layer = None
    if args.mask is not None:
        (mask_layer,) = viewer.open(args.mask, plugin="napari-patchwise")
        mask_layer.opacity = 0.3
        if image_layers:  # the mask in the slide's world coordinates (its pixel size)
            align_mask_layer(mask_layer, image_layers[0])
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    widget.configure(
        mask=mask_layer,
        mask_map=mask_map,
        patch_size=args.patch_size,
        tau=args.tau,
        threshold=args.threshold,
    )
    if table is not None:
        widget.show_table(table, source=args.table, grid=grid)
    else:
        widget.compute()
    widget.configure(overlay=args.overlay)  # shown once the table is
    if args.screenshot is None:
        napari.run()
        return 0
    wait_until_idle(widget)
    if widget.current is None or widget.current.data is None:
        viewer.close()
        raise PatchwiseError("nothing to show: the patch table could not be made", path=args.image)
    viewer.reset_view()

    path = save_screenshot(viewer, args.screenshot)
    viewer.close()
    print(path)
    return 0


#: Options that describe what to open, which a session file already says.
SESSION_REPLACES = ("image", "mask", "mask_map", "table", "overlay")


def _run_session(args: argparse.Namespace) -> int:
    """``view --session FILE``: check the file (one line, exit 2), then reopen it."""
    from ..io.session import read_session

    given = [f"--{k.replace('_', '-')}" for k in SESSION_REPLACES if getattr(args, k) is not None]
    if given:
        name = "IMAGE" if given[0] == "--image" else given[0]
        raise PatchwiseError(f"{name} and --session both say what to open", hint="pass one of them")
    session = read_session(args.session)  # a bad file: one line, before napari starts
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise PatchwiseError(
            "no display to show napari on", hint="run it under xvfb-run with --screenshot"
        )
    import napari

    from .._napari.dock.demo_view import wait_until_idle
    from .._napari.dock.widget import PatchwiseWidget

    viewer = napari.Viewer(title=f"patchwise view {args.session.name}")
    viewer.window.resize(1500, 950)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    if not widget.session_box.open_session(args.session):
        viewer.close()
        raise PatchwiseError("the session could not be opened", path=args.session)
    if args.screenshot is None:
        napari.run()
        return 0

    from qtpy.QtWidgets import QApplication

    while widget.session_box.restoring():  # each step waits for the previous one's work
        QApplication.processEvents()
        time.sleep(0.01)
    wait_until_idle(widget)
    if widget.current is None or (
        session.slides[session.current].computed and widget.current.data is None
    ):
        viewer.close()
        raise PatchwiseError("the session could not be reopened", path=args.session)

    path = save_screenshot(viewer, args.screenshot)
    viewer.close()
    print(path)
    return 0
