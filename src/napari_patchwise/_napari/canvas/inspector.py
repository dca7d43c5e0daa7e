"""The patch inspector: everything about one patch, in words, in a dock panel.

Hovering a patch shows it; a click (without dragging) pins it — the panel then keeps it,
whatever napari writes into its status bar, and one small Shapes layer outlines it on
the canvas (one rectangle, moved on the next pin). A click off the grid unpins.

:func:`patch_facts` is the text (position and size in µm when the slide has a pixel
size, with the level-0 pixels; label, group, ratios, probability, outcome, and both
runs' probabilities in a comparison); the panel only shows it.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from ...analysis.metrics import CORRECTNESS_NAMES, correctness
from ...groups import group_ids, group_names
from ..dock.state import SlideState
from ..reader.layer_slide import layer_units
from . import navigation

#: Rows of the inspector, in order (the keys of :func:`patch_facts`).
FACT_NAMES = (
    "patch",
    "position",
    "size",
    "label",
    "group",
    "probability",
    "outcome",
    "tissue ratio",
    "tumor ratio",
    "tumor/tissue",
)
HOVER_TITLE = "Patch under the cursor (click to pin)"
PINNED_TITLE = "Pinned patch (click another to move, off the grid to unpin)"
OUTLINE_COLOR = "#FFFFFF"


def _ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def _um(value_px: float, size: float | None) -> str:
    return f"{value_px * size:,.1f} µm" if size else f"{value_px:,.0f} px"


def patch_facts(state: SlideState, pos: int, compare=None) -> dict[str, str]:
    """What the inspector says about the patch at table position ``pos`` of ``state``.

    ``compare`` is the Compare tab's :class:`.compare_data.CompareData` (or None): when
    it is of this slide, both runs' probabilities are added under the runs' names.
    """
    d, s = state.data, state.settings
    table = d.table
    y, x, h, w = (int(table[c].iat[pos]) for c in ("y", "x", "height", "width"))
    row, col = int(table["row"].iat[pos]), int(table["col"].iat[pos])
    size_yx = state.slide.pixel_size or (None, None)
    label = int(d.label[pos])
    value = d.attribute_values[pos]
    facts = {
        "patch": f"row {row}, col {col}",
        "position": f"y {_um(y, size_yx[0])}, x {_um(x, size_yx[1])} (level-0 px y {y}, x {x})",
        "size": f"{_um(h, size_yx[0])} x {_um(w, size_yx[1])} ({h} x {w} px)",
        "label": "tumor" if label else "non-tumor",
        "group": group_names(d.attribute)[int(group_ids([label], [value], s.tau)[0])],
        "probability": "— (no predictions)",
        "outcome": "—",
        "tissue ratio": _ratio(float(table["tissue_ratio"].iat[pos])),
        "tumor ratio": _ratio(float(table["tumor_ratio"].iat[pos])),
        "tumor/tissue": _ratio(float(table["tumor_tissue_ratio"].iat[pos])),
    }
    if d.prob is not None and not math.isnan(d.prob[pos]):
        code = correctness([label], [d.prob[pos] >= s.threshold])[0]
        facts["probability"] = f"{d.prob[pos]:.3f}"
        facts["outcome"] = f"{CORRECTNESS_NAMES[int(code)]} (at {s.threshold:.2f})"
    if compare is not None and compare.key == state.key:
        at = compare.raster.lookup(row, col)
        if at >= 0:
            for name, probs in zip(compare.names, (compare.prob_a, compare.prob_b), strict=True):
                facts[f"prob {name}"] = f"{probs[at]:.3f}"
    return facts


def facts_html(facts: dict[str, str]) -> str:
    """The facts as a table, the long ones on their own row, the short ones two a row."""
    cell = "<td style='color:#aaa;padding-right:6px'>{}</td><td style='padding-right:10px'>{}</td>"
    wide = [(k, v) for k, v in facts.items() if k in ("position", "size")]
    short = [(k, v) for k, v in facts.items() if (k, v) not in wide]
    full = "<tr><td style='color:#aaa;padding-right:6px'>{}</td><td colspan=3>{}</td></tr>"
    rows = [full.format(k, v) for k, v in wide[:2]]
    rows += [
        "<tr>" + "".join(cell.format(k, v) for k, v in short[i : i + 2]) + "</tr>"
        for i in range(0, len(short), 2)
    ]
    rows += [full.format(k, v) for k, v in wide[2:]]
    return f"<table>{''.join(rows)}</table>"


class PatchInspector(QGroupBox):
    """Dock panel: the hovered or pinned patch, and its outline on the canvas.

    Parameters
    ----------
    model : DockModel
        The current slide's state, the image layer showing it, the comparison.
    viewer : napari.Viewer
        Where the cursor moves and the outline is drawn.
    """

    def __init__(self, model, viewer) -> None:
        super().__init__(HOVER_TITLE)
        self.model, self.viewer = model, viewer
        self.pinned: tuple[str, int] | None = None  # (slide key, table position)
        self.facts: dict[str, str] = {}
        self.outline = None  # the Shapes layer
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.text = QLabel("hover a patch after computing the grid")
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setWordWrap(True)
        layout.addWidget(self.text)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        viewer.cursor.events.position.connect(self._on_cursor)

    # -- what is under a world position ---------------------------------------------------
    def position_at(self, world) -> int | None:
        """Table position of the current slide's patch under ``world`` (None: none)."""
        state = self.model.current
        if state is None or state.data is None or state.overlays is None:
            return None
        row, col = state.overlays.world_to_cell(world)
        pos = state.data.raster.lookup(row, col)
        return None if pos < 0 else pos

    def hover(self, world) -> None:
        """Show the patch under ``world`` unless one is pinned."""
        if self.pinned is not None:
            return
        pos = self.position_at(world)
        if pos is not None:
            self._show(pos)

    def pin_at(self, world) -> None:
        """Pin the patch under ``world`` (or unpin when there is none)."""
        pos = self.position_at(world)
        if pos is None:
            self.unpin()
            return
        self.pin(pos)

    def pin(self, pos: int) -> None:
        """Pin the current slide's patch at table position ``pos`` and outline it (the
        Errors list pins the error it goes to)."""
        self.pinned = (self.model.current.key, pos)
        self.setTitle(PINNED_TITLE)
        self._show(pos)
        self._draw_outline(pos)

    def unpin(self) -> None:
        self.pinned = None
        self.setTitle(HOVER_TITLE)
        if self._outline_alive():
            self.outline.visible = False

    def refresh(self) -> None:
        """Follow the sliders (group, outcome) or a new slide."""
        state = self.model.current
        if self.pinned is None:
            return
        if state is None or state.data is None or self.pinned[0] != state.key:
            self.unpin()
            return
        self._show(self.pinned[1])

    def _on_cursor(self, _event=None) -> None:
        """The patch under the cursor: in the panel, and as the status-bar text."""
        position = self.viewer.cursor.position
        self.hover(position)
        text = navigation.patch_status(self.model.current, position)
        if text is not None:  # after napari's own status (connected after napari's)
            self.viewer.status = text

    # -- helpers --------------------------------------------------------------------------
    def _show(self, pos: int) -> None:
        compare = self.model.comparison
        self.facts = patch_facts(self.model.current, pos, compare)
        self.text.setText(facts_html(self.facts))

    def _on_mouse(self, _viewer, event):
        """A press and release without a move pins the patch (a drag pans, as usual)."""
        if event.button != 1 or event.modifiers:
            return
        start = np.asarray(event.position)
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged or np.allclose(np.asarray(event.position), start):
            self.pin_at(start)

    def _outline_alive(self) -> bool:
        return self.outline is not None and self.outline in self.viewer.layers

    def _draw_outline(self, pos: int) -> None:
        """One rectangle around the pinned patch, in the slide's world coordinates."""
        state = self.model.current
        table = state.data.table
        y, x, h, w = (float(table[c].iat[pos]) for c in ("y", "x", "height", "width"))
        layer = self.model.layer_showing(state.key)
        p = np.asarray(layer.scale[-2:] if layer is not None else (1.0, 1.0), dtype=float)
        t = np.asarray(layer.translate[-2:] if layer is not None else (0.0, 0.0), dtype=float)
        top_left = t + p * (np.array([y, x]) - 0.5)  # pixel y covers [y - 1/2, y + 1/2)
        bottom_right = t + p * (np.array([y + h, x + w]) - 0.5)
        rect = np.array([top_left, bottom_right])
        width = float(max(h * p[0], w * p[1]) / 16)
        viewer = self.viewer
        if not self._outline_alive():
            active = viewer.layers.selection.active
            self.outline = viewer.add_shapes(
                [rect],
                shape_type="rectangle",
                edge_color=OUTLINE_COLOR,
                face_color="transparent",
                edge_width=width,
                name="pinned patch",
                **({} if layer is None else {"units": layer_units(layer)}),
                metadata={"patchwise_overlay": "pinned"},
            )
            if active is not None:  # adding a layer selects it; keep the user's choice
                viewer.layers.selection.active = active
        else:
            self.outline.data = [rect]
            self.outline.edge_width = width
            self.outline.edge_color = OUTLINE_COLOR
            self.outline.visible = True
