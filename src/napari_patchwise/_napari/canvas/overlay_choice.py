"""One patch overlay at a time, with its legend drawn on the canvas.

The selector (labels, groups, outcome, probability, comparison, none) shows the chosen
overlay of the current slide and hides the others. The legend is one napari canvas text
overlay per class (its box filled with the class colour, the class name on it), stacked
in the canvas's top-left corner, so it is part of ``viewer.screenshot(canvas_only=True)``
and of ``patchwise view --screenshot``. The probability overlay keeps napari's own
colour bar as its legend.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFormLayout, QWidget

from ...analysis.metrics import CORRECTNESS_NAMES
from ...groups import group_names
from ..compare_tab.data import COMPARE_COLORS
from ..compare_tab.views import class_name
from .overlays import CORRECTNESS_COLORS, GROUP_COLORS, LEGENDS

#: The selector's entries, and the overlay kind (SlideOverlays key) each one shows.
CHOICES: dict[str, str | None] = {
    "groups": "groups",
    "outcome": "correctness",
    "probability": "probability",
    "labels": "labels",
    "comparison": "comparison",
    "none": None,
}
LEGEND_PREFIX = "patchwise_legend_"
LEGEND_POSITION = "top_left"  # napari stacks top-left overlays vertically


def _text_colour(hex_color: str) -> str:
    """Black text on a light class colour, white on a dark one."""
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def legend_entries(
    choice: str, compare_names: tuple[str, str] | None = None, attribute: str | None = None
):
    """``(name, colour)`` pairs of the legend for an overlay choice (empty: none).

    The groups are named for the grouping ``attribute`` (``non-tumor/high`` ...).
    """
    if choice == "groups" and attribute is not None:
        return tuple(zip(group_names(attribute), GROUP_COLORS, strict=True))
    if choice == "outcome":
        return tuple(zip(CORRECTNESS_NAMES, CORRECTNESS_COLORS, strict=True))
    if choice in ("groups", "labels"):
        return LEGENDS[choice]
    if choice == "comparison" and compare_names is not None:
        return tuple((class_name(k, compare_names), COMPARE_COLORS[k + 1]) for k in range(4))
    return ()


class CanvasLegend:
    """The legend's canvas overlays (napari text overlays in ``viewer.canvas.overlays``)."""

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.entries: tuple[tuple[str, str], ...] = ()

    def show(self, entries) -> None:
        """Replace the legend by ``entries`` (``(name, colour)``; empty hides it)."""
        from napari.components.overlays import TextOverlay

        overlays = self.viewer.canvas.overlays
        for key in [k for k in overlays if k.startswith(LEGEND_PREFIX)]:
            overlays.pop(key)
        self.entries = tuple(entries)
        for i, (name, colour) in enumerate(self.entries):
            overlays[f"{LEGEND_PREFIX}{i}"] = TextOverlay(
                text=f"  {name}  ",
                color=_text_colour(colour),
                box=True,
                box_color=colour,
                font_size=9,
                position=LEGEND_POSITION,
                visible=True,
                order=i,
            )


class OverlayChoice(QWidget):
    """The "overlay" selector of the dock; :meth:`apply` after any overlay change."""

    def __init__(self, model, viewer) -> None:
        super().__init__()
        self.model, self.viewer = model, viewer
        self.legend = CanvasLegend(viewer)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.addItems(list(CHOICES))
        self.combo.setToolTip("the one patch overlay shown, with its legend on the canvas")
        layout.addRow("overlay shown", self.combo)
        self.combo.currentTextChanged.connect(lambda _text: self.apply())
        model.applied.connect(self.follow_table)  # a new table: outcome or groups
        model.compared.connect(lambda: self.choose("comparison"))
        model.legend_requested.connect(
            lambda entries: self.legend.show(entries) if entries else self.apply()
        )

    def choice(self) -> str:
        return self.combo.currentText()

    def choose(self, choice: str) -> None:
        """Show ``choice`` (one of :data:`CHOICES`)."""
        if self.combo.currentText() == choice:
            self.apply()
        else:
            self.combo.setCurrentText(choice)

    def layers(self) -> dict[str, object]:
        """The current slide's overlay layers by kind (the comparison layer included)."""
        state = self.model.current
        layers: dict[str, object] = {}
        if state is not None and state.overlays is not None:
            for kind in ("labels", "groups", "correctness", "probability"):
                layer = state.overlays._alive(kind)
                if layer is not None:
                    layers[kind] = layer
        compare = self.model.comparison_layer
        if compare is not None and compare in self.viewer.layers:
            layers["comparison"] = compare
        return layers

    def apply(self) -> None:
        """Show the chosen overlay only (of every slide's), and its legend."""
        choice = self.choice()
        kind = CHOICES[choice]
        ours = self.layers()
        for layer in self.viewer.layers:
            other = layer.metadata.get("patchwise_overlay")
            if other in ("labels", "groups", "correctness", "probability", "comparison"):
                layer.visible = layer is ours.get(kind)
        shown = kind in ours
        compare = self.model.comparison
        names = None if compare is None else compare.names
        state = self.model.current
        attribute = None if state is None or state.data is None else state.data.attribute
        self.legend.show(legend_entries(choice, names, attribute) if shown else ())

    def follow_table(self) -> None:
        """After a table is shown: outcome once there are predictions, else groups."""
        state = self.model.current
        has_prob = state is not None and state.data is not None and state.data.prob is not None
        if self.choice() == "outcome" and not has_prob:
            self.choose("groups")
        elif self.choice() == "groups" and has_prob:
            self.choose("outcome")
        else:
            self.apply()
