"""The HTML report over training runs: Table 1, per-group accuracies, curves, Figure 1.

``write_report(run_dirs, out)`` reads each run directory (``config.json``,
``metrics.json``, ``history.csv``, ``predictions.parquet``) and writes one self-contained
HTML file (figures embedded as base64 PNG):

* a Table-1-style table: method and selection metric against WGA and BCA per tau, as
  mean +- std over the runs (seeds) of each (method, selection, tau);
* test accuracy per group for every run;
* learning curves (training loss, validation WGA and BCA) from ``history.csv``;
* the paper's Figure-1 histograms of the selected checkpoint's test predictions
  (:func:`napari_patchwise.reporting.figures.figure1`).

A run contributes one row per selection metric it evaluated on the test split
(``metrics.json`` holds both the ``val_wga`` and the ``val_bca`` checkpoint): the ERM
rows "selected by val BCA" and "by val WGA" come from the same training runs.

Groups are each run's own (``tissue_ratio`` at tau unless it was trained with
``--attribute``; such runs are labelled ``"ERM [mean_CARS]"``). ``attribute=`` regroups
every run's test predictions (``predictions.parquet``, the selected checkpoint's) by
another attribute at one threshold (``patchwise report --attribute COLUMN
--attribute-threshold T``; docs/attributes.md). Figure 1 stays the paper's figure over
the tumor, tumor-to-tissue and tissue ratios (its tau marker only for tissue-ratio groups).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_paths
from ..analysis.intervals import table_slide_counts
from ..analysis.metrics import evaluate
from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE, GROUP_NAMES, attribute_values, group_names
from ..training.runs import PREDICTIONS, Run, has_test, load_run, read_predictions, run_attribute
from ..training.sweep import read_sweep
from .figures import FIGURE1_BINS, figure1
from .table1 import (
    MIN_GROUP_N,
    config_key,
    config_labels,
    seed_interval,
    table1,
    table1_frame,
    write_table1_csv,
)

#: Table 1 as CSV, written next to every report.
TABLE1_CSV = "table1.csv"
TABLE1_NOTE = (
    "One row per configuration, selection metric and tau: runs are pooled only when their "
    "config.json agree on every option but the seed and the runtime settings (output "
    "folder, threads, workers, device, cache); the configuration column names what "
    "differs between a method's rows. WGA and BCA: mean ± sample standard deviation over "
    "the row's seeds; each run's checkpoint is selected on the validation split. "
    "WGA 95% CI: slide-level bootstrap of the seed-averaged test WGA (2,000 draws of the "
    "test slides with replacement, every patch of a drawn slide kept; docs/numbers.md). "
    "min_group_n: the smallest test group over the row's runs."
)

__all__ = ["table1"]  # re-exported: Table 1 lives in .table1

SELECT_LABELS = {"val_wga": "val WGA", "val_bca": "val BCA"}


def result_rows(
    runs: Sequence[Run], *, attribute: str | None = None, attribute_threshold: float | None = None
) -> pd.DataFrame:
    """One row per (run, selection metric) with test WGA, BCA and per-group accuracy (%).

    ``tau`` holds the groups' threshold and ``attribute`` their attribute. With
    ``attribute`` given, each run's selected checkpoint's test predictions are regrouped
    by it at ``attribute_threshold`` (:func:`regrouped_test`), one row per run.
    """
    rows = []
    labels = config_labels([run.config for run in runs])
    for run, config_text in zip(runs, labels, strict=True):
        if attribute is None:
            entries = [
                (select, entry["step"], entry.get("test"))
                for select, entry in run.metrics.get("by_selection", {}).items()
            ]
            own, threshold = run_attribute(run.config), _run_threshold(run)
        else:
            select = run.metrics["selected_by"]
            test = (
                regrouped_test(run, attribute, attribute_threshold)
                if has_test(run.metrics)
                else None
            )
            entries = [(select, run.metrics["by_selection"][select]["step"], test)]
            own, threshold = attribute, attribute_threshold
        for select, step, test in entries:
            if not test:
                continue
            label = run.method_label
            if attribute is None and own != DEFAULT_ATTRIBUTE:
                label += f" [{own}]"
            row = {
                "method": label,
                "config": config_text,
                "config_key": config_key(run.config),
                "select": select,
                "attribute": own,
                "tau": float(threshold),
                "seed": int(run.config["seed"]),
                "run": run.path.name,
                "step": step,
                "wga": _pct(test["wga"]),
                "bca": _pct(test["bca"]),
                "accuracy": _pct(test["accuracy"]),
                "min_group_n": _min_group_n(test, own),
                "run_path": str(run.path),
            }
            for name in group_names(own):
                row[name] = _pct(test["groups"][name]["accuracy"])
            rows.append(row)
    return pd.DataFrame(rows)


def _min_group_n(test: dict, attribute: str) -> float:
    """The smallest test group's patch count (NaN when metrics.json has no counts)."""
    sizes = [test["groups"][name].get("n") for name in group_names(attribute)]
    if any(not isinstance(n, int | float) or isinstance(n, bool) for n in sizes):
        return np.nan
    return float(min(sizes))


def _run_threshold(run: Run) -> float:
    """The run's group threshold: ``metrics.json``'s (runs with --attribute) or tau."""
    value = run.metrics.get("attribute_threshold")
    return float(run.config["tau"] if value is None else value)


def _prediction_attribute(table: pd.DataFrame, attribute: str, path: Path) -> np.ndarray:
    if attribute not in table:
        raise PatchwiseError(
            f"the run's test predictions have no {attribute!r} column",
            path=path,
            hint="regroup by a column they hold (tissue_ratio), or leave this run out: a run "
            f"trained with --attribute {attribute} keeps that column",
        )
    return attribute_values(table, attribute, path=path)


def regrouped_test(run: Run, attribute: str, threshold: float) -> dict:
    """The run's test metrics (selected checkpoint) with groups by ``attribute``."""

    path = run.path / PREDICTIONS
    table = read_predictions(path)
    ev = evaluate(
        table["label"].to_numpy(),
        _prediction_attribute(table, attribute, path),
        prob=table["prob"].to_numpy() if "prob" in table else None,
        pred=table["pred"].to_numpy() if "pred" in table else None,
        tau=threshold,
        threshold=float(run.config.get("threshold", 0.5)),
        attribute=attribute,
    )
    return ev.to_dict()


def _pct(value) -> float:
    return np.nan if value is None else 100.0 * float(value)


def table1_markdown(rows: pd.DataFrame) -> str:
    """Table 1 as markdown: ``mean ± std`` (%) of WGA and BCA per tau, one row per
    configuration and selection metric (:mod:`.table1`); a WGA cell whose smallest test
    group holds fewer than :data:`~napari_patchwise.reporting.table1.MIN_GROUP_N` patches is marked ⚠."""
    wide = table1(rows)
    if wide.empty:
        return "(no finished runs with test metrics)"
    taus = sorted({t for t, _, _ in wide.columns}, reverse=True)
    header = ["method", "selected by"]
    split = _split_label(rows)
    for tau in taus:
        header += [f"WGA {split}{tau:g}", f"BCA {split}{tau:g}"]
    lines = ["| " + " | ".join([*header, "min_group_n"]) + " |", "|" + "---|" * (len(header) + 1)]
    for (label, select), values in wide.iterrows():
        cells = [label, SELECT_LABELS.get(select, select)]
        smallest = []
        for tau in taus:
            min_n = values.get((tau, "groups", "min_n"))
            smallest.append(min_n)
            for metric in ("wga", "bca"):
                cell = _mean_std(
                    values.get((tau, metric, "mean")),
                    values.get((tau, metric, "std")),
                    values.get((tau, metric, "n")),
                )
                cells.append(cell + (" ⚠" if metric == "wga" and _tiny(min_n) else ""))
        finite = [v for v in smallest if v is not None and np.isfinite(v)]
        cells.append(f"{min(finite):.0f}" if finite else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _splits(rows: pd.DataFrame) -> dict:
    """``(method, config) -> attribute`` of the rows' groups."""
    if rows.empty:
        return {}
    return {
        (m, c): a for m, c, a in zip(rows["method"], rows["config"], rows["attribute"], strict=True)
    }


def _tiny(min_n) -> bool:
    return min_n is not None and np.isfinite(min_n) and min_n < MIN_GROUP_N


def table1_intervals(
    runs: Sequence[Run],
    rows: pd.DataFrame,
    *,
    attribute: str | None = None,
) -> dict[tuple, tuple[float, float] | str]:
    """The seed-averaged slide-bootstrap WGA interval (%) of each Table-1 row, or why none.

    Keys are ``(method, config, select, tau)``. Each run's ``predictions.parquet``
    holds the test predictions of its own selected checkpoint only, so a row of the other
    selection metric has no interval; neither has a row tested on fewer than two slides.
    """

    by_path = {str(run.path): run for run in runs}
    counts: dict[str, object] = {}
    result: dict[tuple, tuple[float, float] | str] = {}
    if rows.empty:
        return result
    keys = ["method", "config", "select", "tau"]
    for key, part in rows.groupby(keys, sort=False):
        members = [by_path[p] for p in part["run_path"]]
        other = [r for r in members if r.metrics["selected_by"] != key[2]]
        if other:
            result[key] = (
                f"{PREDICTIONS} holds the test predictions of the checkpoint selected by "
                f"{SELECT_LABELS.get(other[0].metrics['selected_by'], '?')} only"
            )
            continue
        try:
            tables = [
                counts.get(str(r.path))
                or counts.setdefault(
                    str(r.path),
                    table_slide_counts(
                        read_predictions(r.path / PREDICTIONS),
                        attribute=attribute or run_attribute(r.config),
                        tau=float(key[3]),
                        threshold=float(r.config.get("threshold", 0.5)),
                        path=r.path / PREDICTIONS,
                    ),
                )
                for r in members
            ]
        except PatchwiseError as exc:
            result[key] = str(exc)
            continue
        result[key] = seed_interval(tables)
    return result


def table1_html(frame: pd.DataFrame, intervals: dict, splits: dict | None = None) -> str:
    """The long Table 1 (:func:`napari_patchwise.reporting.table1.table1_frame`) as an HTML table,
    with a note for every row without an interval and every marked cell. ``splits``:
    ``(method, config) -> attribute`` of the groups (default tissue_ratio: ``tau=``)."""
    if frame.empty:
        return "<p>(no finished runs with test metrics)</p>"
    head = [
        "method",
        "configuration",
        "selected by",
        "groups",
        "seeds",
        "WGA",
        "WGA 95% CI (slides)",
        "BCA",
        "min_group_n",
    ]
    lines = ["<table class='table1'><thead><tr>"]
    lines += [f"<th>{html.escape(h)}</th>" for h in head] + ["</tr></thead><tbody>"]
    notes: list[str] = []
    for _, r in frame.iterrows():
        n = 2 if r["n_seeds"] > 1 else 1
        wga = _mean_std(r["wga_mean"], r["wga_std"], n)
        warn = _tiny(r["min_group_n"])
        reason = intervals.get((r["method"], r["config"], r["select"], r["tau"]))
        ci = (
            f"[{r['wga_ci_low']:.2f}, {r['wga_ci_high']:.2f}]"
            if np.isfinite(r["wga_ci_low"])
            else "–"
        )
        if isinstance(reason, str):
            notes.append(
                f"{r['method']} {r['config']}".strip()
                + f", {SELECT_LABELS.get(r['select'], r['select'])}, tau={r['tau']:g}: no interval: {reason}"
            )
        attribute = (splits or {}).get((r["method"], r["config"]), DEFAULT_ATTRIBUTE)
        split = "tau=" if attribute == DEFAULT_ATTRIBUTE else f"{attribute} >= "
        cells = [
            r["method"],
            r["config"],
            SELECT_LABELS.get(r["select"], r["select"]),
            f"{split}{r['tau']:g}",
            f"{r['n_seeds']}",
        ]
        row = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        mark = f" class='warn' title='a test group holds fewer than {MIN_GROUP_N} patches'"
        row += f"<td{mark if warn else ''}>{html.escape(wga)}{' ⚠' if warn else ''}</td>"
        row += f"<td>{html.escape(ci)}</td>"
        row += f"<td>{html.escape(_mean_std(r['bca_mean'], r['bca_std'], n))}</td>"
        min_n = r["min_group_n"]
        row += f"<td>{'–' if not np.isfinite(min_n) else f'{min_n:.0f}'}</td>"
        lines.append(f"<tr>{row}</tr>")
    lines.append("</tbody></table>")
    if frame["min_group_n"].lt(MIN_GROUP_N).any():
        notes.append(
            f"⚠: the row's smallest test group holds fewer than {MIN_GROUP_N} patches (0: an "
            "empty group, left out of WGA), so its WGA rests on few patches."
        )
    lines += [f"<p class='note'>{html.escape(note)}</p>" for note in notes]
    return "".join(lines)


def _split_label(rows: pd.DataFrame) -> str:
    """``tau=`` for tissue-ratio groups, ``<attribute> >= `` for one other attribute."""
    attributes = set(rows["attribute"]) if "attribute" in rows else {DEFAULT_ATTRIBUTE}
    if attributes == {DEFAULT_ATTRIBUTE}:
        return "tau="
    return f"{attributes.pop()} >= " if len(attributes) == 1 else "threshold="


def _mean_std(mean, std, n) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    if n is None or not np.isfinite(n) or n < 2 or not np.isfinite(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


# -- figures -------------------------------------------------------------------------------
def learning_curves(runs: Sequence[Run]):
    """Training loss and validation WGA / BCA against step, one line per run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for run in runs:
        h = run.history
        label = f"{run.method_label} tau={run.config['tau']:g} seed={run.config['seed']}"
        if "loss" in h:
            axes[0].plot(h["step"], h["loss"], label=label)
        axes[1].plot(h["step"], 100 * h["val_wga"], label=label)
        axes[2].plot(h["step"], 100 * h["val_bca"], label=label)
    for ax, title in zip(
        axes, ("training loss", "validation WGA (%)", "validation BCA (%)"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("step")
    if runs:
        axes[2].legend(fontsize="x-small", loc="lower right")
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def render_html(
    runs: Sequence[Run],
    *,
    bins: int = FIGURE1_BINS,
    intro: Sequence[str] = (),
    images: Sequence[tuple[str, str | os.PathLike]] = (),
    attribute: str | None = None,
    attribute_threshold: float | None = None,
    frame: pd.DataFrame | None = None,
    intervals: dict | None = None,
) -> str:
    """The report as one self-contained HTML string.

    ``intro`` paragraphs (plain text) follow the title; ``images`` are ``(caption, PNG
    file)`` pairs (e.g. viewer screenshots), embedded after the learning curves;
    ``attribute``: regroup every run. ``frame``/``intervals``: Table 1 already computed
    (:func:`table1_report`), else computed here.
    """
    rows = result_rows(runs, attribute=attribute, attribute_threshold=attribute_threshold)
    if frame is None:
        intervals = table1_intervals(runs, rows, attribute=attribute)
        frame = table1_frame(rows, intervals)
    intervals = intervals or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>patchwise training report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
        "td:first-child,td:nth-child(2){text-align:left}img{max-width:100%}</style></head><body>",
        "<h1>Training report</h1>",
        *(f"<p>{html.escape(text)}</p>" for text in intro),
        f"<p>{len(runs)} run(s): {html.escape(', '.join(str(r.path) for r in runs))}</p>",
        "<h2>Table 1: test WGA and BCA (%)</h2>",
        f"<p>{html.escape(TABLE1_NOTE)}" + _attribute_note(attribute, attribute_threshold) + "</p>",
        table1_html(frame, intervals, _splits(rows)),
        "<h2>Test accuracy per group (%)</h2>",
    ]
    if not rows.empty:
        names = [*GROUP_NAMES, *group_names("any")]
        cols = ["method", "config", "select", "attribute", "tau", "seed", "step", "wga", "bca"]
        cols += [n for n in names if n in rows]
        parts.append(
            rows[cols].to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="empty")
        )
    parts += ["<h2>Learning curves</h2>", _img(learning_curves(runs), "learning curves")]
    parts += _image_parts(images)
    parts += _figure1_parts(runs, bins, attribute)
    parts.append("</body></html>")
    return "\n".join(parts)


def _image_parts(images: Sequence[tuple[str, str | os.PathLike]]) -> list[str]:
    parts = ["<h2>In the viewer</h2>"] if images else []
    for caption, path in images:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return parts


def _attribute_note(attribute: str | None, threshold: float | None) -> str:
    if attribute is None:
        return ""
    return html.escape(
        f" Groups: {attribute} >= {threshold:g}, from each run's test predictions "
        "(predictions.parquet, the checkpoint selected by the run's own metric)."
    )


def _figure1_parts(runs: Sequence[Run], bins: int, attribute: str | None) -> list[str]:
    parts = ["<h2>Figure 1: test predictions of the selected checkpoints</h2>"]
    for run in runs:
        pred_path = run.path / PREDICTIONS
        if not pred_path.is_file():
            continue
        table = read_predictions(pred_path)
        tau = float(run.config["tau"])
        groups = attribute or run_attribute(run.config)
        split = f"tau={tau:g}" if groups == DEFAULT_ATTRIBUTE else f"groups by {groups}"
        title = f"{run.method_label}, selected by {SELECT_LABELS.get(run.metrics['selected_by'], '')}, {split}, seed {run.config['seed']} ({run.path.name})"
        if groups != DEFAULT_ATTRIBUTE:
            tau = float("nan")  # the tissue-ratio panel's tau marker means nothing here
        fig = figure1(
            table,
            tau=tau,
            threshold=float(run.config.get("threshold", 0.5)),
            bins=bins,
            title=title,
        )
        parts.append(_img(fig, title))
    return parts


def write_report(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    intro: Sequence[str] = (),
    images: Sequence[tuple[str, str | os.PathLike]] = (),
    attribute: str | None = None,
    attribute_threshold: float | None = None,
) -> Path:
    """Write the HTML report of ``run_dirs`` to ``out`` (atomically); see :func:`render_html`.

    ``attribute``/``attribute_threshold``: regroup every run's test predictions by that
    attribute (:func:`regrouped_test`); every run's predictions must hold the column.
    """
    if not run_dirs:
        raise PatchwiseError("no run directories given")
    runs = [load_run(p) for p in run_dirs]
    frame, intervals = table1_report(
        runs, attribute=attribute, attribute_threshold=attribute_threshold
    )
    text = render_html(
        runs,
        intro=intro,
        images=images,
        attribute=attribute,
        attribute_threshold=attribute_threshold,
        frame=frame,
        intervals=intervals,
    )
    return _write_html_and_csv(text, frame, out)


def table1_csv_path(out: str | os.PathLike) -> Path:
    """Where ``table1.csv`` goes: next to the report."""
    return Path(out).with_name(TABLE1_CSV)


def table1_report(
    runs: Sequence[Run], *, attribute: str | None = None, attribute_threshold: float | None = None
) -> tuple[pd.DataFrame, dict]:
    """Table 1 of ``runs`` (long form, :data:`napari_patchwise.reporting.table1.CSV_COLUMNS`) and the
    interval (or the reason for none) of each row."""
    rows = result_rows(runs, attribute=attribute, attribute_threshold=attribute_threshold)
    intervals = table1_intervals(runs, rows, attribute=attribute)
    return table1_frame(rows, intervals), intervals


def _write_html_and_csv(text: str, frame: pd.DataFrame, out: str | os.PathLike) -> Path:
    """The report and its ``table1.csv``, renamed into place together."""
    out = Path(out)
    with atomic_paths([out, table1_csv_path(out)]) as (tmp_html, tmp_csv):
        tmp_html.write_text(text, encoding="utf-8")
        write_table1_csv(frame, tmp_csv)
    return out


# -- a sweep folder (``patchwise sweep``) -------------------------------------------------------
def sweep_points(table: pd.DataFrame, axes: Sequence[str], select: str) -> pd.DataFrame:
    """One row per grid point: its values, runs, validation and test means (%), selection.

    Columns: the grid options, ``runs`` (``"ran/seeds"``, or the status when no run ran),
    ``val_mean`` and ``val_std`` of ``select`` over the seeds that ran, ``test_wga`` and
    ``test_bca`` (means), ``note`` (the first skip or failure note) and ``selected``.
    """
    keys = list(axes) if axes else None
    groups = table.groupby(keys, sort=False) if keys else [((), table)]
    rows = []
    for key, runs in groups:
        ran = runs[runs["status"] == "run"]
        values = 100.0 * ran[select].to_numpy(dtype=float)
        notes = [str(n) for n in runs.get("note", pd.Series(dtype=str)).dropna() if str(n)]
        row = dict(zip(axes, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(
            runs=f"{len(ran)}/{len(runs)}" if len(ran) else "/".join(runs["status"].unique()),
            val_mean=float(np.mean(values)) if len(values) else np.nan,
            val_std=float(np.std(values, ddof=1)) if len(values) > 1 else np.nan,
            test_wga=100.0 * float(ran["test_wga"].mean()) if len(ran) else np.nan,
            test_bca=100.0 * float(ran["test_bca"].mean()) if len(ran) else np.nan,
            note=notes[0] if notes else "",
            selected=bool(runs.get("selected", pd.Series(False)).astype(bool).any()),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _sweep_grid_html(points: pd.DataFrame, axes: Sequence[str], select: str) -> str:
    label = SELECT_LABELS.get(select, select)
    head = [*axes, "runs", f"{label} (val, %)", "test WGA (%)", "test BCA (%)", "", "note"]
    lines = ["<table class='grid'><thead><tr>"]
    lines += [f"<th>{html.escape(h)}</th>" for h in head]
    lines.append("</tr></thead><tbody>")
    for _, p in points.iterrows():
        val = _mean_std(p["val_mean"], p["val_std"], 2 if np.isfinite(p["val_std"]) else 1)
        cells = [f"{p[a]:g}" for a in axes] + [p["runs"], val]
        cells += [_mean_std(p["test_wga"], np.nan, 1), _mean_std(p["test_bca"], np.nan, 1)]
        cells += ["◀ selected" if p["selected"] else "", p["note"]]
        row_class = " class='selected'" if p["selected"] else ""
        lines.append(
            f"<tr{row_class}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


def _point_text(selected: dict) -> str:
    point = selected.get("point")
    if point is None:
        return f"none ({selected.get('reason', '')})"
    return ", ".join(f"{k}={v:g}" for k, v in point.items()) or "the only grid point"


def sweep_table1(sweep_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict, list[Run]]:
    """Table 1 of a sweep: the seeds of its selected grid point (``selected.json``'s
    ``runs``); empty when no point was selected. Returns ``(frame, intervals, runs)``."""

    sweep_dir = Path(sweep_dir)
    _, _, selected = read_sweep(sweep_dir)
    finished = [load_run(sweep_dir / r) for r in selected.get("runs") or []]
    if not finished:
        return table1_frame(pd.DataFrame()), {}, []
    frame, intervals = table1_report(finished)
    return frame, intervals, finished


def render_sweep_html(
    sweep_dir: str | os.PathLike, table1_parts: tuple[pd.DataFrame, dict, list] | None = None
) -> str:
    """The report of a sweep folder: Table 1 of the selected point's seeds, the grid
    (selected point marked), every run, the selected runs' curves."""

    sweep_dir = Path(sweep_dir)
    spec, table, selected = read_sweep(sweep_dir)
    frame, intervals, finished = table1_parts or sweep_table1(sweep_dir)
    axes, select = list(spec.get("axes", {})), selected["select"]
    label = SELECT_LABELS.get(select, select)
    chosen = _point_text(selected)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>patchwise sweep report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:"
        "collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "th{background:#eee}tr.selected td{background:#ffe9a8;font-weight:bold}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>Sweep {html.escape(str(sweep_dir))}</h1>",
        f"<p>Method {html.escape(str(spec.get('method', '')))}, seeds "
        f"{html.escape(', '.join(map(str, spec.get('seeds', []))))}; each grid point is "
        f"ranked by the mean over seeds of its runs' best {label} on the validation split. "
        f"Selected: <b>{html.escape(chosen)}</b>.</p>",
        "<h2>Table 1: test WGA and BCA (%) of the selected point's seeds</h2>",
        f"<p>{html.escape(TABLE1_NOTE)}</p>",
        table1_html(frame, intervals),
        "<h2>Grid</h2>",
        _sweep_grid_html(sweep_points(table, axes, select), axes, select),
        "<h2>Runs</h2>",
        table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–"),
    ]
    if finished:
        parts += ["<h2>Learning curves of the selected runs</h2>"]
        parts.append(_img(learning_curves(finished), "learning curves"))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_sweep_report(sweep_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the HTML report of a sweep folder to ``out`` and Table 1 (the selected
    point's seeds) to ``table1.csv`` beside it, atomically."""
    parts = sweep_table1(sweep_dir)
    return _write_html_and_csv(render_sweep_html(sweep_dir, parts), parts[0], out)
