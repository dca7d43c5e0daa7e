"""The Debias tab's discovered slices: ``patchwise discover``'s output on the slide.

"Load slices…" reads a ``slices.parquet`` and the ``slices.json`` beside it (the CLI's
two outputs, docs/shortcuts.md) and lists the slices, best first: size, accuracy,
held-out score (older outputs: score), whether it beats the (cross-fitted) noise floor,
and the attribute it correlates with most. Clicking a
row outlines that slice's patches of the current slide in the highlight layer (matched on
slide, row and col) and names the slice in the canvas legend; "Clear" removes the outline
and brings back the legend of the overlay shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...errors import PatchwiseError
from ..dock import notify
from ..dock.row_table import row_table

COLUMNS = ("rank", "slice", "patches", "on this slide", "accuracy", "held-out score", "above noise",
           "attribute")  # fmt: skip


def read_slices(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """``patchwise discover``'s per-patch table and its summary (one-line errors)."""
    path = Path(path)
    summary_path = path.with_suffix(".json")
    try:
        per_patch = pd.read_parquet(path, columns=["slide", "row", "col", "slice"])
        summary = json.loads(summary_path.read_text())
        if not isinstance(summary.get("slices"), list):  # not discover's summary
            raise KeyError("slices")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PatchwiseError(
            f"not the output of patchwise discover ({type(exc).__name__})",
            path=path,
            hint="choose the --out of patchwise discover, with its .json beside it",
        ) from None
    return per_patch, summary


class SlicesBox(QWidget):
    """Load discovered slices, list them, outline one on the current slide.

    ``model``: the dock's :class:`.dock_model.DockModel` (the current slide; the canvas
    legend through its ``legend_requested`` event).
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.per_patch: pd.DataFrame | None = None
        self.slices: list[dict] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.load_button = QPushButton("Load slices…")
        self.load_button.setToolTip("The slices.parquet file that 'patchwise discover' wrote")
        self.load_button.clicked.connect(self._ask)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Forget the loaded slices and their marks")
        self.clear_button.clicked.connect(self.clear)
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.clear_button)
        self.label = QLabel("no slices loaded (patchwise discover)")
        self.label.setWordWrap(True)
        self.table = row_table(COLUMNS, min_height=120)
        self.table.cellClicked.connect(lambda row, _col: self.show_slice(row))
        layout.addLayout(buttons)
        layout.addWidget(self.label)
        layout.addWidget(self.table)

    def _ask(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Discovered slices", "", "Slices (*.parquet)")
        if path:
            self.load(path)

    def load(self, path: str | Path) -> bool:
        """Read and list the slices (False after a notification)."""
        try:
            self.per_patch, summary = read_slices(path)
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        self.slices = list(summary["slices"])
        counts = self._on_this_slide()
        self.table.setRowCount(len(self.slices))
        for i, s in enumerate(self.slices):
            top = s.get("attributes") or []
            attribute = f"{top[0]['column']} ({top[0]['correlation']:+.2f})" if top else "-"
            cells = (
                str(s["rank"]), str(s["id"]), str(s["size"]), str(counts.get(s["id"], 0)),
                f"{100 * s['accuracy']:.1f}%", f"{s.get('held_out_score', s['score']):.4f}",
                "yes" if s["above_noise"] else "no", attribute,
            )  # fmt: skip
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        floor = summary.get("noise_floor")
        above = sum(bool(s["above_noise"]) for s in self.slices)
        self.label.setText(
            f"{len(self.slices)} slices, {above} above the noise floor"
            + (f" ({floor:.4f}, cross-fitted)" if isinstance(floor, float) else "")
            + "; click one to outline its patches on this slide"
        )
        return True

    def _on_this_slide(self) -> dict[int, int]:
        state = self.model.current
        if self.per_patch is None or state is None or state.data is None:
            return {}
        from ...analysis.discover import slice_positions

        table = state.data.table
        return {
            int(s["id"]): int(slice_positions(table, self.per_patch, int(s["id"])).size)
            for s in self.slices
        }

    def show_slice(self, row: int) -> np.ndarray | None:
        """Outline slice ``row``'s patches of the current slide; their table positions."""
        from ...analysis.discover import slice_positions
        from ..canvas.navigation import highlight

        state = self.model.current
        if not (0 <= row < len(self.slices)) or self.per_patch is None:
            return None
        if state is None or state.data is None or state.overlays is None:
            notify.info("Patchwise: compute the slide's patch grid first")
            return None
        members = slice_positions(state.data.table, self.per_patch, int(self.slices[row]["id"]))
        if members.size == 0:
            notify.info("Patchwise: this slice has no patch on the current slide")
        highlight(state, members)
        self._legend(self.slices[row], members.size)
        return members

    def _legend(self, s: dict, here: int) -> None:
        """The canvas legend names the outlined slice (the overlay choice's comes back on Clear)."""
        from ..canvas.overlays import HIGHLIGHT_COLOR

        text = (f"slice {s['id']} (rank {s['rank']}): {here} patches here, "
                f"accuracy {100 * s['accuracy']:.1f}%")  # fmt: skip
        self.model.legend_requested.emit(((text, HIGHLIGHT_COLOR),))

    def clear(self) -> None:
        from ..canvas.navigation import highlight

        state = self.model.current
        if state is not None and state.data is not None and state.overlays is not None:
            highlight(state, None)
        self.model.legend_requested.emit(())  # the legend of the overlay shown again
