"""Per-slide settings and results, remembered while napari runs.

The dock widget keeps one :class:`SlideState` per slide (keyed by the slide's file path,
or its name when it has none), so switching the selected image layer swaps the grid and
tissue settings, tau, the decision threshold and the computed table with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ...analysis.incremental import SliderEvaluator
from ...groups import DEFAULT_ATTRIBUTE, DEFAULT_TAU, attribute_values
from ...patches.grid import PatchGrid
from ...patches.table import PatchTable
from ...schema import DEFAULT_THRESHOLD
from ...settings import PatchSettings
from ...slide import Slide
from ..canvas.overlays import AttributeScale, PatchRaster, SlideOverlays
from ..reader.layer_slide import slide_key

__all__ = ["PatchData", "SlideSettings", "SlideState", "slide_key"]


@dataclass
class SlideSettings:
    """What the user chose for one slide: the core patch settings and the view's own.

    ``patch`` is the core :class:`~napari_patchwise.settings.PatchSettings` (the grid and
    tissue form; ``None`` fields automatic: the stride tiles, Otsu's tissue threshold,
    the slide's own background); the rest are the dock's view of the table.
    """

    patch: PatchSettings = field(default_factory=PatchSettings)
    attribute: str = DEFAULT_ATTRIBUTE  # the groups' attribute (docs/attributes.md)
    tau: float = DEFAULT_TAU  # the attribute's threshold: tau for tissue_ratio, else in its units
    threshold: float = DEFAULT_THRESHOLD
    mask_layer: str = ""  # name of the chosen mask layer, "" for the slide's own mask

    def carried(self) -> SlideSettings:
        """Fresh settings for another slide, with this one's grid and tissue settings.

        Tau, the decision threshold, the attribute and the mask stay the slide's own; so
        does its background (``None``: the slide's own, e.g. bright for brightfield).
        """
        return SlideSettings(patch=replace(self.patch, background=None))


@dataclass
class PatchData:
    """A computed (or loaded) patch table and what the viewer derives from it once.

    Per-patch arrays are in table order; ``raster`` maps them to grid cells. The groups
    are ``2 * label + (attribute_values >= tau)``: the ``attribute`` column's values
    (``tissue_ratio`` unless another attribute was chosen, docs/attributes.md).
    """

    table: pd.DataFrame
    raster: PatchRaster
    label: np.ndarray  # int8
    attribute_values: np.ndarray  # float64
    prob: np.ndarray | None  # float64 (NaN: no prediction), or None before predictions
    # metrics.evaluate's results in O(log N) per slider move, over the patches with a
    # prediction once there are any
    evaluator: SliderEvaluator
    attribute: str = DEFAULT_ATTRIBUTE
    scale: AttributeScale | None = None  # the groups overlay's [0, 1] scale (not tissue_ratio)

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        shape: tuple[int, int] | None = None,
        attribute: str = DEFAULT_ATTRIBUTE,
    ) -> PatchData:
        """Derive everything from a patch table (O(N log N), run it in a worker)."""
        label = table["label"].to_numpy(dtype=np.int8)
        ratio = attribute_values(table, attribute)
        prob = table["prob"].to_numpy(dtype=np.float64) if "prob" in table else None
        named = {"attribute": attribute}
        if prob is None:
            evaluator = SliderEvaluator(label, ratio, **named)
        elif np.isnan(prob).any():  # predictions for part of the slide (e.g. a test split)
            scored = ~np.isnan(prob)
            evaluator = SliderEvaluator(label[scored], ratio[scored], prob[scored], **named)
        else:
            evaluator = SliderEvaluator(label, ratio, prob, **named)
        return cls(
            table=table,
            raster=PatchRaster.from_table(table, shape),
            label=label,
            attribute_values=ratio,
            prob=prob,
            evaluator=evaluator,
            attribute=attribute,
            scale=None if attribute == DEFAULT_ATTRIBUTE else AttributeScale(ratio),
        )

    def overlay_values(self) -> np.ndarray:
        """Per-patch values in [0, 1] for the groups overlay (``3 * label + value``)."""
        return (
            self.attribute_values if self.scale is None else self.scale.unit(self.attribute_values)
        )

    def overlay_threshold(self, threshold: float) -> float:
        """Where the groups overlay's colour step goes for ``attribute >= threshold``."""
        return float(threshold) if self.scale is None else self.scale.unit_threshold(threshold)


@dataclass
class SlideState:
    """Everything the widget remembers about one slide."""

    key: str
    slide: Slide
    settings: SlideSettings = field(default_factory=SlideSettings)
    data: PatchData | None = None
    overlays: SlideOverlays | None = None
    panels: list | None = None  # histograms.BinnedScores of ``data``
    grid: PatchGrid | None = None  # the grid ``data``'s table lies on
    # where the shown table came from, what a saved session reopens (.session_box)
    computed: bool = False  # the grid was computed from ``settings``
    table_source: Path | None = None  # a complete patch table file shown instead
    predictions_source: Path | None = None  # a prediction table, run folder or checkpoint
    # grid cells (row, col) of the errors the user ticked as reviewed in the Errors list
    # (kept across slider moves and new predictions; a plain set a session file can save)
    reviewed: set[tuple[int, int]] = field(default_factory=set)

    def patch_table(self) -> PatchTable | None:
        """The shown table with its grid (None before a table is shown)."""
        if self.data is None or self.grid is None:
            return None
        return PatchTable(self.data.table, self.grid, None, self.slide.name)

    @classmethod
    def after(cls, previous: SlideState | None, *, key: str, slide: Slide) -> SlideState:
        """A new slide's state, starting with ``previous``'s grid and tissue settings."""
        state = cls(key=key, slide=slide)
        if previous is not None:
            state.settings = previous.settings.carried()
        return state
