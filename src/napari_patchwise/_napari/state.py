"""Per-slide settings and results, remembered while napari runs.

The dock widget keeps one :class:`SlideState` per slide (keyed by the slide's file path,
or its name when it has none), so switching the selected image layer swaps the grid and
tissue settings, tau, the decision threshold and the computed table with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..slide import Slide
from ..slider_eval import SliderEvaluator
from .overlays import PatchRaster, SlideOverlays


@dataclass
class SlideSettings:
    """What the user chose for one slide (the widget's form)."""

    patch_size: int = 64
    stride: int = 0  # 0: same as the patch size (tiling)
    keep_edges: bool = False
    tissue: str = "auto"  # auto | mask | intensity
    tissue_threshold: float = 0.0  # 0: automatic (Otsu on the smallest level)
    background: str = "dark"  # dark | bright
    tau: float = 0.1
    threshold: float = 0.5
    mask_layer: str = ""  # name of the chosen mask layer, "" for the slide's own mask


@dataclass
class PatchData:
    """A computed (or loaded) patch table and what the viewer derives from it once.

    Per-patch arrays are in table order; ``raster`` maps them to grid cells.
    """

    table: pd.DataFrame
    raster: PatchRaster
    label: np.ndarray  # int8
    tissue_ratio: np.ndarray  # float64
    prob: np.ndarray | None  # float64 (NaN: no prediction), or None before predictions
    # metrics.evaluate's results in O(log N) per slider move, over the patches with a
    # prediction once there are any
    evaluator: SliderEvaluator

    @classmethod
    def from_table(cls, table: pd.DataFrame, shape: tuple[int, int] | None = None) -> PatchData:
        """Derive everything from a patch table (O(N), run it in a worker)."""
        label = table["label"].to_numpy(dtype=np.int8)
        ratio = table["tissue_ratio"].to_numpy(dtype=np.float64)
        prob = table["prob"].to_numpy(dtype=np.float64) if "prob" in table else None
        if prob is None:
            evaluator = SliderEvaluator(label, ratio)
        elif np.isnan(prob).any():  # predictions for part of the slide (e.g. a test split)
            scored = ~np.isnan(prob)
            evaluator = SliderEvaluator(label[scored], ratio[scored], prob[scored])
        else:
            evaluator = SliderEvaluator(label, ratio, prob)
        return cls(
            table=table,
            raster=PatchRaster.from_table(table, shape),
            label=label,
            tissue_ratio=ratio,
            prob=prob,
            evaluator=evaluator,
        )


@dataclass
class SlideState:
    """Everything the widget remembers about one slide."""

    key: str
    slide: Slide
    settings: SlideSettings = field(default_factory=SlideSettings)
    data: PatchData | None = None
    overlays: SlideOverlays | None = None
    panels: list | None = None  # histograms.BinnedScores of ``data``
    geometry: tuple[tuple[int, int], int] | None = None  # (origin, stride) of ``data``

    def __post_init__(self) -> None:
        # A brightfield slide (vendor WSI: bright background) starts on "bright".
        if self.slide.background == "bright":
            self.settings.background = "bright"


def slide_key(slide: Slide) -> str:
    """Identity of a slide across layers: its path, else its name."""
    return str(slide.path) if slide.path is not None else slide.name
