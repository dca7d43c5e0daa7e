"""The Compare tab's data: two runs' predictions of one slide, prepared off the main thread.

A source is a prediction table (parquet/CSV, as "Load predictions…" takes), a run
folder or one of its checkpoints. A run folder's ``predictions.parquet`` holds only its
cohort's test slides; when the open slide is not among them, the slide's computed patch
grid is predicted with the run's checkpoint (:func:`.train_worker.predict_job`, the
Model tab's Predict path).

Everything O(N) happens in :func:`prepare_comparison` (worker): pairing
(:func:`napari_patchwise.analysis.compare.paired_predictions`), the grid rasters of label and
both probabilities, the :class:`~napari_patchwise.analysis.compare.PairEvaluator`. A threshold
move then recomputes only the cells whose class can change
(:class:`~napari_patchwise.analysis.compare.ClassGrid`) and a tau move costs O(log N).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from napari.utils.colormaps import Colormap
from napari.utils.colormaps.standardize_color import transform_color

from ... import palette
from ...analysis.compare import ClassGrid, PairEvaluator, comparison_classes, paired_predictions
from ...errors import PatchwiseError
from ...patches.grid import PatchGrid
from ...patches.predictions import full_table, slide_predictions
from ...patches.table import PatchTable
from ...schema import PREDICTED_PATCH_COLUMNS
from ...slide import Slide
from ..canvas.overlays import PatchRaster

TABLE_SUFFIXES = (".parquet", ".csv", ".gz")
# none (transparent), both right, both wrong, only A right, only B right: both right only
# tinted so the tissue shows through; B's fixes blue, B's breakages vermillion (Okabe-Ito).
COMPARE_COLORS: tuple[str, ...] = ("#000000", *palette.COMPARE_COLORS)
COMPARE_ALPHA: tuple[float, ...] = (0.0, 0.35, 1.0, 1.0, 1.0)
#: Contrast limits putting value k (class + 1) in the middle of colour k's fifth of the map.
COMPARE_LIMITS = (-0.5, 4.5)


def compare_colormap() -> Colormap:
    """Five-colour step colormap for the comparison layer (value = class + 1, 0 none)."""
    rgba = transform_color(list(COMPARE_COLORS))
    rgba[:, 3] = COMPARE_ALPHA
    return Colormap(
        colors=rgba,
        controls=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        interpolation="zero",
        name="patchwise comparison",
        display_name="patchwise comparison",
    )


def shown_table(state) -> tuple[str, Slide, PatchTable | None, tuple[int, int] | None]:
    """What the worker needs of a dock's :class:`.state.SlideState` (read on the main
    thread): its key, slide, shown table with its grid (None before the grid) and the
    table's raster shape."""
    data = state.data
    return state.key, state.slide, state.patch_table(), None if data is None else data.raster.shape


@dataclass
class CompareData:
    """Two runs on one slide's patches: per-patch arrays (table order) and grid rasters."""

    names: tuple[str, str]
    key: str
    table: pd.DataFrame
    raster: PatchRaster
    label: np.ndarray
    tissue_ratio: np.ndarray
    prob_a: np.ndarray
    prob_b: np.ndarray
    grid: ClassGrid  # the layer's data (class + 1 per cell), follows the threshold
    pair: PairEvaluator
    patch_grid: PatchGrid  # the grid the patches lie on

    def classes(self, threshold: float) -> np.ndarray:
        """Comparison class per patch (table order)."""
        return comparison_classes(self.label, self.prob_a, self.prob_b, threshold)


def source_name(path: str | Path) -> str:
    """A short name for a source: the run's method (ERM, GERNE…) or the file's name."""
    path = Path(path)
    run = path if path.is_dir() else path.parent
    if path.is_dir() or path.suffix == ".pt" or path.name == "predictions.parquet":
        try:
            from ...training.methods import METHOD_LABELS
            from ...training.runs import read_run_config

            config = read_run_config(run, required=False)
            if config is not None:
                return METHOD_LABELS.get(config.method, config.method)
        except PatchwiseError:
            pass
        return run.name
    return path.name.split(".")[0]


def read_source(
    path: str | Path, slide: Slide, table: PatchTable | None, *, cancel, progress
) -> pd.DataFrame:
    """The open slide's predictions from a table, a run folder or a checkpoint (predicted
    on ``table``, the slide's shown grid, when the run did not predict the slide)."""
    from ...io.tables import read_table
    from ...training.runs import PREDICTIONS

    path = Path(path)
    if not path.exists():
        raise PatchwiseError("no such file or folder", path=path, hint="check the path")
    if path.is_file() and path.name.endswith(TABLE_SUFFIXES):
        return read_table(path, required=("row", "col", "prob"))
    if path.is_dir() and (path / PREDICTIONS).is_file():
        predictions = read_table(path / PREDICTIONS, required=("row", "col", "prob"))
        if "slide" not in predictions or (predictions["slide"].astype(str) == slide.name).any():
            return predictions
    if table is None:
        raise PatchwiseError(
            f"the run did not predict '{slide.name}' and the slide has no patch grid",
            path=path,
            hint="compute the patch grid with the model's patch size, then compare",
        )
    from ..jobs.training_work import predict_job

    predicted = predict_job(slide, table, path)(cancel=cancel, progress=progress)
    return predicted[[c for c in PREDICTED_PATCH_COLUMNS if c in predicted]]


def prepare_comparison(
    shown: tuple[str, Slide, PatchTable | None, tuple[int, int] | None],
    sources: tuple[str | Path, str | Path],
    names: tuple[str, str],
    *,
    threshold: float,
    cancel,
    progress,
) -> CompareData:
    """Read (or predict) both sources and prepare everything a slider move needs.

    ``shown``: :func:`shown_table` of the dock's slide."""
    key, slide, table, shape = shown
    name = slide.name
    preds = []
    for source in sources:
        pred = read_source(source, slide, table, cancel=cancel, progress=progress)
        preds.append(slide_predictions(pred, name, source=source))
    if table is None:  # no computed grid: A must be a complete patch table
        base, patch_grid = full_table(preds[0], name, slide.shape[1:], source=sources[0])
        shape = None
    else:
        base, patch_grid = table.frame, table.grid
    paired = paired_predictions(base, preds[0], preds[1], sources=sources)
    raster = PatchRaster.from_table(paired, shape)
    label = paired["label"].to_numpy(dtype=np.int8)
    ratio = paired["tissue_ratio"].to_numpy(dtype=np.float64)
    prob_a = paired["prob_a"].to_numpy(dtype=np.float64)
    prob_b = paired["prob_b"].to_numpy(dtype=np.float64)
    return CompareData(
        names=names,
        key=key,
        table=paired,
        raster=raster,
        label=label,
        tissue_ratio=ratio,
        prob_a=prob_a,
        prob_b=prob_b,
        grid=ClassGrid(
            raster.paint(label, fill=-1, dtype=np.int8),
            # float64 like the tables, so the layer agrees with them at any threshold
            raster.paint(prob_a, dtype=np.float64),
            raster.paint(prob_b, dtype=np.float64),
            threshold,
            # empty glass transparent, as on every overlay (still counted)
            shown=raster.paint(ratio > 0, fill=False, dtype=bool),
        ),
        pair=PairEvaluator(label, ratio, prob_a, prob_b),
        patch_grid=patch_grid,
    )
