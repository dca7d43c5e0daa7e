"""The dock's "Compare" tab: two runs on the open slide, patch by patch and per group.

Choose run A and run B — prediction tables (parquet/CSV), run folders or checkpoints,
or "Last two trainings" of the Model tab — and press Compare. The tab then shows:

* a one-pixel-per-patch layer ``"<slide> run comparison"`` (same transform as the other
  overlays): both right (grey tint), both wrong (yellow), only A right (vermillion:
  broken by B), only B right (blue: fixed by B), transparent where a patch has no label
  or no prediction of either run;
* both runs' per-group accuracy, accuracy, BCA and WGA side by side, and B minus A;
* the patches fixed by B or broken by B (largest probability change first); choosing
  one centres the view on it.

The dock's tau and threshold sliders drive all of it: a threshold move recomputes the
class of only the cells whose class can change (:class:`~napari_patchwise.analysis.compare.ClassGrid`,
in place in the layer's data) and refreshes the layer; a tau move only changes the
table (O(log N),
:class:`~napari_patchwise.analysis.compare.PairEvaluator`); the list follows after a pause.
Programmatic use (``patchwise demo``): :meth:`CompareBox.load_tables`.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...analysis.compare import CHANGES, changed_patches
from ...errors import PatchwiseError
from ..canvas import navigation
from ..canvas.overlays import overlay_transform
from ..dock import notify
from ..model_tab.train_form import line_edit_with_button
from ..reader.layer_slide import layer_units
from .data import (
    COMPARE_LIMITS,
    CompareData,
    compare_colormap,
    prepare_comparison,
    shown_table,
    source_name,
)
from .views import ChangedPatches, SideBySide, class_legend, class_name

LIST_DEBOUNCE_MS = 150
LAYER_NAME = "run comparison"
SOURCE_HINT = "prediction table, run folder or checkpoint"
FILTERS = ("fixed by B", "broken by B")


class CompareBox(QWidget):
    """Compare two runs on the current slide of ``model`` (the dock's model: sliders,
    runner, the comparison and its layer), drawn in ``viewer``.

    ``compared`` is emitted once a comparison is shown. Parts: ``edit_a``, ``edit_b``,
    ``name_a``, ``name_b``, ``compare_button``, ``last_button``, ``summary``,
    ``table`` (:class:`.compare_views.SideBySide`), ``filter_combo``, ``patches``
    (:class:`.compare_views.ChangedPatches`); ``layer`` is the comparison layer.
    """

    compared = Signal()

    def __init__(self, model, viewer) -> None:
        super().__init__()
        self.model, self.viewer = model, viewer
        self.trainings: list[Path] = []  # runs the Model tab finished, oldest first
        self.job = model.jobs.job("the comparison", "Patchwise: comparison cancelled", parent=self)
        self._build_ui()
        self._connect()
        model.compare_requested.connect(self.load_tables)

    # the comparison and its layer live in the model (the inspector, the overlay read them)
    @property
    def data(self) -> CompareData | None:
        return self.model.comparison

    @data.setter
    def data(self, data: CompareData | None) -> None:
        self.model.comparison = data

    @property
    def layer(self):
        return self.model.comparison_layer

    @layer.setter
    def layer(self, layer) -> None:
        self.model.comparison_layer = layer

    # -- UI -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        form = QFormLayout()
        self.edit_a, row_a = line_edit_with_button(
            SOURCE_HINT, lambda: self._ask(self.edit_a), f"run A: {SOURCE_HINT}"
        )
        self.edit_b, row_b = line_edit_with_button(
            SOURCE_HINT, lambda: self._ask(self.edit_b), f"run B: {SOURCE_HINT}"
        )
        self.name_a, self.name_b = QLineEdit(), QLineEdit()
        self.name_a.setPlaceholderText("name of A (default: method or file)")
        self.name_b.setPlaceholderText("name of B")
        self.name_a.setToolTip("What the tables and the overlay call run A")
        self.name_b.setToolTip("What the tables and the overlay call run B")
        names = QWidget()
        names_layout = QHBoxLayout(names)
        names_layout.setContentsMargins(0, 0, 0, 0)
        names_layout.addWidget(self.name_a)
        names_layout.addWidget(self.name_b)
        form.addRow("run A", row_a)
        form.addRow("run B", row_b)
        form.addRow("names", names)
        root.addLayout(form)
        buttons = QHBoxLayout()
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip(
            "Compare runs A and B patch by patch on this slide (an overlay) and per group"
        )
        self.last_button = QPushButton("Last two trainings")
        self.last_button.setToolTip("A and B: the two runs the Model tab trained last")
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.last_button)
        root.addLayout(buttons)
        self.summary = QLabel("choose two runs' predictions of this slide and press Compare")
        self.summary.setWordWrap(True)
        root.addWidget(self.summary)
        self.legend, self.legend_labels = class_legend()
        root.addWidget(self.legend)
        self.table = SideBySide()
        root.addWidget(self.table)
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(FILTERS)
        self.filter_combo.setToolTip("Which changed patches the list below shows")
        self.filter_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.list_label = QLabel("")
        self.list_label.setWordWrap(True)
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.filter_combo)
        filter_row.addWidget(self.list_label, stretch=1)
        root.addLayout(filter_row)
        self.patches = ChangedPatches()
        root.addWidget(self.patches, stretch=1)
        self.list_timer = QTimer(self)
        self.list_timer.setSingleShot(True)
        self.list_timer.setInterval(LIST_DEBOUNCE_MS)

    def _connect(self) -> None:
        self.compare_button.clicked.connect(lambda: self.compare())
        self.last_button.clicked.connect(self.use_last_trainings)
        self.job.busy_changed.connect(lambda busy: self.compare_button.setEnabled(not busy))
        self.model.settings.events.tau.connect(self._on_tau)
        self.model.settings.events.threshold.connect(self._on_threshold)
        self.model.run_trained.connect(self.trainings.append)
        # back on the compared slide, its sliders' values apply (they move without signals;
        # deferred: the dock swaps the slide's state in its own slot, connected after this)
        for signal in (self.model.image_chosen, self.model.layers_changed):
            signal.connect(lambda *_: QTimer.singleShot(0, self._on_threshold))
        self.filter_combo.currentIndexChanged.connect(self.refresh_list)
        self.list_timer.timeout.connect(self.refresh_list)
        self.patches.patch_chosen.connect(self.go_to_patch)

    def _ask(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Predictions of a run, or a checkpoint to predict the slide with",
            "",
            "Predictions or checkpoints (*.parquet *.csv *.csv.gz *.pt)",
        )
        if path:
            edit.setText(path)

    # -- actions --------------------------------------------------------------------------
    def load_tables(
        self,
        path_a: str | Path,
        path_b: str | Path,
        names: tuple[str, str] | None = None,
    ) -> bool:
        """Compare two sources (tables, run folders or checkpoints) on the current slide.

        Starts a background job (False after a notification if it cannot start);
        ``compared`` is emitted when the comparison is shown, :meth:`wait` blocks until
        then.
        """
        self.edit_a.setText(str(path_a))
        self.edit_b.setText(str(path_b))
        for edit, name in zip((self.name_a, self.name_b), names or ("", ""), strict=True):
            edit.setText(name)
        return self.compare()

    def use_last_trainings(self) -> bool:
        """Put the Model tab's last two runs into A (older) and B (newer) and compare."""
        if len(self.trainings) < 2:
            notify.error("Patchwise: train two runs in the Model tab first (or choose two)")
            return False
        return self.load_tables(self.trainings[-2], self.trainings[-1])

    def compare(self) -> bool:
        """Read (or predict) the chosen sources in a worker, then show the comparison."""
        if not self.model.jobs.admit(self.job):  # the runner said what runs
            return False
        try:
            shown, sources, names = self._request()
        except PatchwiseError as exc:
            notify.error(exc)
            return False
        name = shown[1].name
        self.summary.setText(f"comparing {names[0]} and {names[1]} on {name}…")

        threshold = self.threshold()

        def job(*, cancel, progress) -> CompareData:
            return prepare_comparison(
                shown, sources, names, threshold=threshold, cancel=cancel, progress=progress
            )

        self.job.start(job, returned=self._show, description=f"Comparing runs on {name}")
        return True

    def _request(self) -> tuple[tuple, tuple[str, str], tuple[str, str]]:
        sources = (self.edit_a.text().strip(), self.edit_b.text().strip())
        if not all(sources):
            raise PatchwiseError("choose the predictions of run A and run B first")
        shown = shown_table(self.model.require_state())
        names = [self.name_a.text().strip(), self.name_b.text().strip()]
        defaults = [source_name(s) for s in sources]
        if defaults[0] == defaults[1]:  # two runs of one method: their folders or files
            defaults = [Path(s).name or s for s in sources]
        names = tuple(n or d for n, d in zip(names, defaults, strict=True))
        return shown, sources, names

    def busy(self) -> bool:
        return self.job.running

    def wait(self) -> None:
        """Turn the Qt event loop until the running comparison is shown (scripts)."""
        self.job.wait()

    # -- showing --------------------------------------------------------------------------
    def _show(self, data: CompareData) -> None:
        """Main thread: the prepared comparison becomes the layer, table and list."""
        if self.job.cancelled():
            return
        self.data = data
        self.table.set_names(data.names)
        for k, label in enumerate(self.legend_labels):
            label.setText(class_name(k, data.names))
        for i, text in enumerate(FILTERS):
            self.filter_combo.setItemText(i, text.replace("B", data.names[1]))
        self._put_layer(data)
        self.refresh()
        self.compared.emit()
        self.model.compared.emit()

    def _put_layer(self, data: CompareData) -> None:
        state = self.model.states.get(data.key)
        prefix = state.slide.name if state is not None else data.key
        image = self.model.layer_showing(data.key)
        scale, translate = overlay_transform(
            data.patch_grid.origin,
            data.patch_grid.step,
            image_scale=tuple(image.scale[-2:]) if image is not None else (1.0, 1.0),
            image_translate=tuple(image.translate[-2:]) if image is not None else (0.0, 0.0),
        )
        data.grid.move_to(self.threshold())
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = self.viewer.add_image(
            data.grid.values,
            name=f"{prefix} {LAYER_NAME}",
            colormap=compare_colormap(),
            contrast_limits=COMPARE_LIMITS,
            scale=scale,
            translate=translate,
            units=None if image is None else layer_units(image),
            opacity=0.75,
            blending="translucent",
            interpolation2d="nearest",
            metadata={"patchwise_overlay": "comparison", "patchwise_prefix": prefix},
        )

    def threshold(self) -> float:
        return float(self.model.settings.threshold)

    def tau(self) -> float:
        return float(self.model.settings.tau)

    def _follows_sliders(self) -> bool:
        current = self.model.current
        return self.data is not None and current is not None and current.key == self.data.key

    def _on_threshold(self, *_args) -> None:
        if self._follows_sliders():
            self.refresh(list_now=False)

    def _on_tau(self, *_args) -> None:
        if self._follows_sliders():
            self.show_metrics()
            self.list_timer.start()  # the list's group column

    def refresh(self, *, list_now: bool = True) -> None:
        """Recolour the layer at the current threshold; metrics now, the list now or soon."""
        data = self.data
        if data is None:
            return
        if data.grid.move_to(self.threshold()) and self.layer in self.viewer.layers:
            if self.layer.data is data.grid.values:
                # changed in place: a refresh re-uploads it (2 ms for 10^6 cells; setting
                # .data re-validates the layer, 11 ms)
                self.layer.refresh()
            else:
                self.layer.data = data.grid.values
        self.show_metrics()
        if list_now:
            self.refresh_list()
        else:
            self.list_timer.start()

    def show_metrics(self) -> None:
        data = self.data
        if data is None:
            return
        ev_a, ev_b = data.pair.evaluate(self.tau(), self.threshold())
        self.table.show_evaluations(ev_a, ev_b)
        counts = data.grid.counts
        parts = [f"{class_name(k, data.names)} {int(c):,}" for k, c in enumerate(counts)]
        self.summary.setText(
            f"{data.names[0]} vs {data.names[1]} on {data.pair.n:,} patches "
            f"(threshold {self.threshold():.3f}, tau {self.tau():.3f}): " + " · ".join(parts)
        )

    def refresh_list(self, *_args) -> None:
        """List the patches fixed (or broken) by B at the current threshold."""
        data = self.data
        if data is None:
            return
        which = tuple(CHANGES)[self.filter_combo.currentIndex()]
        classes = data.classes(self.threshold())
        positions = changed_patches(classes, data.prob_a, data.prob_b, which)
        self.patches.show_patches(data, positions, self.tau())
        verb = f"{which} by {data.names[1]}"
        listed = self.patches.rowCount()
        shown = f" (the {listed} largest changes)" if positions.size > listed else ""
        self.list_label.setText(f"{positions.size:,} patches {verb}{shown}; click one to go there")

    def go_to_patch(self, position: int) -> None:
        """Centre the view on the compared table's patch at ``position``."""
        if self.data is not None:
            image = self.model.layer_showing(self.data.key)
            navigation.go_to_row(self.viewer, self.data.table, position, image)
