"""Planted-bias benchmark: the paper's Table 1 on synthetic slides, with controls, on a CPU.

Builds train / val / test slides (4 / 3 / 3) with ``patchwise synth`` (the library function
behind it, :func:`napari_patchwise.synthetic.slides.write_synthetic_slide`) in which tissue size and
label go together (``--spurious``), then for each strength, tau and seed trains
``smallcnn`` with every method at an **equal tuning budget**: each method has the same
number of configurations (``--lrs`` for ERM, class-balanced ERM, ReSample and ReWeight;
``--etas`` for GroupDRO; ``--betas`` at c = 1 for GERNE, i.e. k = c (1 + beta), see
``docs/methods.md``), and per seed the configuration with the best validation WGA is kept
(ERM's "val BCA" row: configuration and checkpoint by validation BCA). The test split is
never looked at for a choice.

**DFR**: a head on the features of each seed's selected ERM run (``patchwise embed``, then
``train --features --method dfr``). It fits on the validation labels, which the other rows
use only to select; its row says so.

**Equal samples seen.** GERNE draws two batches of ``--batch-size`` (half of it per class
each) per step; every other method draws ONE batch of twice that size.

Writes (``benchmarks/_results_io.py``, atomically) ``runs.csv`` (every run and selection
metric: the varied values, seed, selected step, val and test WGA / BCA, group sizes, which
configuration was selected), ``tables.md`` (test WGA / BCA with 95 % t intervals over
seeds; each method's test WGA minus the best control's, paired by seed, paired t-test,
Holm-corrected; every configuration) and ``meta.json`` (command, date, commit, load,
settings) into ``docs/results/planted_bias/`` (``--results`` to change; with ``--quick``
into ``benchmarks/_results/planted_bias_quick/``, never into docs/results/). The exit
status is 0 when the tables were written: the numbers are reported, not judged.

    .venv/bin/python benchmarks/planted_bias.py [--out DIR] [--jobs 4] [--seeds ...]
        [--taus ...] [--methods ...] [--lrs ...] [--etas ...] [--betas ...] [--report-only]

Several training processes run side by side (one thread each). A finished run in ``--out``
with the same options is reused, so an interrupted benchmark resumes; ``--report-only``
writes the tables of the runs finished so far, marked PARTIAL when some are missing. Runs
train tau by tau: ERM first (the DFR heads need it), then GERNE and ReSample seed by
seed, then GroupDRO, then ReWeight.

``--quick`` (what ``make bench`` runs): 1024 px slides (kept in benchmarks/_data/quick/),
one seed, tau = 0.1, 20 steps, every method with two configurations, in a temporary
folder; the same tables. 20 steps cannot separate the methods.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

QUICK_SLIDES = Path(__file__).resolve().parent / "_data" / "quick" / "planted_bias"
#: The paper's ERM selected by validation BCA at tau = 0.1 (its Table 1); the paper's ERM
#: selected by validation WGA is 73.54.
PAPER_ERM_BCA_SELECTED_WGA = 63.75
PAPER_ERM_WGA_SELECTED_WGA = 73.54
# several validation and test slides: the selection among configurations and checkpoints,
# and the test, rest on more than one slide
LAYOUT = {"train": [11, 12, 13, 14], "val": [21, 22, 23], "test": [31, 32, 33]}
QUICK = {
    "size": 1024,
    "steps": 20,
    "eval_every": 10,
    "seeds": [0],
    "taus": [0.1],
    "spurious": [0.7],
    "lrs": [0.01, 0.02],
    "etas": [0.01, 0.1],
    "betas": [0.0, 0.5],
    "methods": ["erm", "erm_cb", "resample", "reweight", "groupdro", "gerne"],
}
FULL = {
    # 1024 px slides: evaluating the patches costs most of a run, and 2 shared cores
    # allow about 120 runs of this size in an hour (docs/benchmarks.md)
    "size": 1024,
    "steps": 200,
    "eval_every": 50,
    "seeds": [0, 1, 2, 3, 4],
    "taus": [0.1, 0.03],
    # 0.7: the paper's regime (ERM far below the debiasing methods but not at zero)
    "spurious": [0.7],
    # two configurations per method (the equal tuning budget; what 2 shared cores allow)
    "lrs": [0.01, 0.02],
    "etas": [0.01, 0.1],
    # GERNE at c = 1: k = c (1 + beta) = 1 and 1.5 (docs/methods.md)
    "betas": [0.0, 0.5],
    # class-balanced ERM left out: the weakest control (far below the group-aware ones),
    # 10 runs of CPU time; --methods erm_cb ... adds it
    "methods": ["erm", "resample", "reweight", "groupdro", "gerne"],
}
GERNE_C = 1.0
BASE_LR = 0.01

# (run name, method, fixed options, label, the option its configurations vary)
METHODS: tuple[tuple[str, str, dict, str, str], ...] = (
    ("erm", "erm", {}, "ERM", "lr"),
    ("erm_cb", "erm", {"class_balanced": True}, "ERM (class-balanced)", "lr"),
    ("resample", "resample", {}, "ReSample", "lr"),
    ("reweight", "reweight", {}, "ReWeight", "lr"),
    ("groupdro", "groupdro", {}, "GroupDRO", "eta"),
    ("gerne", "gerne", {"c": GERNE_C}, "GERNE", "beta"),
)
CONTROLS = tuple(m[3] for m in METHODS if m[0] != "gerne")
METHOD_CHOICES = tuple(m[0] for m in METHODS)
#: where a varied option's values come from in the arguments
GRID_ARG = {"lr": "lrs", "eta": "etas", "beta": "betas"}


@dataclass
class Job:
    """One training run and what the tables need to know about it."""

    options: dict
    spurious: float
    name: str  # the method's run name (METHODS)
    label: str
    varied: str  # the option its configurations vary

    @property
    def out(self) -> str:
        return self.options["out"]

    @property
    def value(self) -> float:
        return float(self.options[self.varied])


@dataclass
class Plan:
    """Every run of the benchmark and the grid points skipped for their bound."""

    jobs: list[Job] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    manifests: dict = field(default_factory=dict)  # spurious -> manifest
    groups: dict = field(default_factory=dict)  # (spurious, tau) -> {split: counts}


# -- slides ------------------------------------------------------------------------------
def make_slides(folder: Path, *, size: int, spurious: float) -> Path:
    """Write the slides (skipping existing ones) and the cohort manifest.

    The folder is named after the size and the strength, so slides made with other
    settings are never reused by mistake.
    """
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

    folder = folder / f"size{size}_spurious{spurious:g}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split"]
    for split, seeds in LAYOUT.items():
        for seed in seeds:
            image = folder / f"{split}{seed}.ome.tif"
            mask = folder / f"{split}{seed}_mask.tif"
            if not (image.exists() and mask.exists()):
                config = SynthConfig(size=(size, size), seed=seed, spurious=spurious)
                write_synthetic_slide(image, mask, config)
            lines.append(f"{image.name},{mask.name},{split}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def training_alpha(cohort, tau: float):
    """``(group counts, alpha)`` of the training split at tau, as GERNE computes them."""
    from napari_patchwise.training.methods import TrainingGroups

    table = cohort.table("train")
    data = TrainingGroups.from_table(table["label"], table["tissue_ratio"], tau)
    return data.counts, data.alpha


def describe_cohort(cohort, taus, spurious: float) -> None:
    """Print each split's group counts and the training split's alpha per tau."""
    from napari_patchwise.groups import group_counts

    for tau in taus:
        for split in ("train", "val", "test"):
            t = cohort.table(split)
            counts = group_counts(t["label"], t["tissue_ratio"], tau).tolist()
            print(f"  spurious={spurious:g} tau={tau:g} {split:5s} group counts {counts}")
        _, alpha = training_alpha(cohort, tau)
        print(f"  spurious={spurious:g} tau={tau:g} train alpha {alpha.round(3).tolist()}")


# -- the plan ----------------------------------------------------------------------------
def plan_level(args, manifest: Path, cohort, spurious: float, out: Path) -> Plan:
    """The runs of one spurious strength, in the order they train.

    Tau by tau, then seed by seed: what finishes first is every method and configuration
    of the first tau's first seeds, so an interrupted run still compares like with like.
    """
    from napari_patchwise.training.methods.gerne import beta_max

    common = dict(
        manifest=str(manifest),
        model="smallcnn",
        patch_size=args.patch_size,
        steps=args.steps,
        eval_every=args.eval_every,
        lr=BASE_LR,
        weight_decay=1e-4,
        num_threads=1,
        eval_batch_size=128,  # smallcnn's forward is fastest at about 128 on one thread
        select="val_wga",
    )
    plan = Plan()
    for tau in args.taus:
        _, alpha = training_alpha(cohort, tau)
        bound = beta_max(alpha, GERNE_C)
        for seed in args.seeds:
            run = dict(common, tau=tau, seed=seed)
            for name, method, extra, label, varied in METHODS:
                if name not in args.methods:
                    continue
                # GERNE: two batches of --batch-size per step; the controls one of twice
                # that size: the same samples per step
                batch = args.batch_size * (1 if method == "gerne" else 2)
                for value in getattr(args, GRID_ARG[varied]):
                    if varied == "beta" and value >= bound:
                        if seed == args.seeds[0]:
                            plan.skipped.append(
                                f"spurious={spurious:g} tau={tau:g} c={GERNE_C:g} "
                                f"beta={value:g}: skipped, at or above beta_max={bound:.3g}"
                            )
                        continue
                    options = dict(run, method=method, batch_size=batch, **extra)
                    options[varied] = value
                    options["out"] = str(out / f"{name}_{varied}{value:g}_tau{tau:g}_seed{seed}")
                    plan.jobs.append(Job(options, spurious, name, label, varied))
    # ERM first (every seed): the DFR heads need its runs and can start early (a
    # second invocation with --report-only); then seed by seed GERNE and ReSample (the
    # strongest control in the earlier version), then GroupDRO, then ReWeight: a run cut
    # short for time still compares GERNE with ReSample on every seed (stable sort)
    order = {"erm": 0, "groupdro": 2, "reweight": 3}
    plan.jobs.sort(key=lambda j: (args.taus.index(j.options["tau"]), order.get(j.name, 1)))
    return plan


def run_one(options: dict) -> str | None:
    """Train one run (in a worker process); returns the run directory, None on failure.

    A failed run is reported and left out (the tables say which runs are missing); it does
    not stop the others.
    """
    from napari_patchwise.training.loop import TrainConfig, train

    config = TrainConfig.from_options(options)
    out = Path(config.out)
    if finished_with(out, options):
        return str(out)  # finished earlier with the same options: reuse
    if out.exists():
        shutil.rmtree(out)  # interrupted, or other options: train it again
    t0 = time.perf_counter()
    try:
        train(config)
    except Exception as exc:  # noqa: BLE001 -- one failed run must not stop the benchmark
        print(f"  {out.name}: FAILED: {exc}", flush=True)
        return None
    print(f"  {out.parent.name}/{out.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return str(out)


def finished_with(out: Path, options: dict) -> bool:
    """Whether ``out`` is a finished run whose config.json holds ``options``."""
    import json

    if not (out / "metrics.json").is_file():
        return False
    saved = json.loads((out / "config.json").read_text())
    return all(saved.get(key) == value for key, value in options.items())


def run_all(jobs: list[Job], n_jobs: int) -> None:
    """Train every job, ``n_jobs`` processes side by side."""
    # spawn, not fork: the parent already runs dask/torch threads (fork would deadlock)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        list(pool.map(run_one, [job.options for job in jobs]))


# -- DFR ----------------------------------------------------------------------------------
def dfr_runs(args, plan: Plan, rows, out: Path) -> list[dict]:
    """A DFR head on the features of each (tau, seed)'s selected ERM run.

    The ERM run is the one whose configuration the ERM row selected (val WGA); its
    best.pt is embedded (``patchwise embed``) and a DFR head trained on the features
    (``train --features --method dfr``): DFR fits its head on the VALIDATION split's
    labels (half of it to choose its regularisation), which the other rows use only to
    select. Returns the result rows of the finished heads.
    """
    from napari_patchwise.training.embed import EmbedSource, embed
    from napari_patchwise.training.loop import TrainConfig, train

    erm = rows[(rows["name"] == "erm") & rows["selected"] & (rows["select"] == "val_wga")]
    new = []
    for r in erm.itertuples():
        tag = f"tau{r.tau:g}_seed{r.seed}"
        level = out / f"spurious{r.spurious:g}"
        store, head = level / f"features_erm_{tag}.zarr", level / f"dfr_{tag}"
        try:
            if not (head / "metrics.json").is_file():
                if not store.exists():
                    embed(
                        plan.manifests[r.spurious], store,
                        EmbedSource(checkpoint=r.run), device="cpu",
                    )  # fmt: skip
                options = dict(
                    manifest=str(plan.manifests[r.spurious]), out=str(head),
                    features=str(store), method="dfr", tau=r.tau, seed=r.seed,
                    select="val_wga", num_threads=1,
                )  # fmt: skip
                train(TrainConfig.from_options(options))
        except Exception as exc:  # noqa: BLE001 -- reported, the other rows stand
            print(f"  DFR {tag}: FAILED: {exc}", flush=True)
            continue
        job = Job({"out": str(head)}, r.spurious, "dfr", DFR_LABEL, "")
        new += run_rows(job, plan)
    for row in new:
        row["selected"] = True
        row["features_of"] = Path(
            erm[(erm["tau"] == row["tau"]) & (erm["seed"] == row["seed"])]["run"].iloc[0]
        ).name
    return new


# -- the tables --------------------------------------------------------------------------
DFR_LABEL = "DFR (head on ERM features; fits on val labels)"


def run_rows(job: Job, plan: Plan) -> list[dict]:
    """The result rows of one finished run: one per selection metric (val WGA, val BCA)."""
    import json

    import pandas as pd

    out = Path(job.out)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    history = pd.read_csv(out / "history.csv") if (out / "history.csv").is_file() else None
    tau = float(config["tau"])
    groups = plan.groups.get((job.spurious, tau), {})
    rows = []
    for select, entry in metrics["by_selection"].items():
        test = entry.get("test") or {}
        at = None
        if history is not None and "step" in history:
            match = history[history["step"] == entry["step"]]
            at = match.iloc[-1] if len(match) else None
        c, beta = config.get("c"), config.get("beta")
        row = {
            "run": str(out),
            "name": job.name,
            "method": job.label,
            "spurious": job.spurious,
            "tau": tau,
            "seed": int(config["seed"]),
            "varied": job.varied,
            "value": job.value if job.varied else math.nan,
            "lr": config.get("lr") if job.name != "dfr" else math.nan,
            "eta": config.get("eta") if job.name == "groupdro" else math.nan,
            "c": c if job.name == "gerne" else math.nan,
            "beta": beta if job.name == "gerne" else math.nan,
            "k": c * (1 + beta) if job.name == "gerne" else math.nan,
            "batch_size": config.get("batch_size"),
            "steps": config.get("steps"),
            "select": select,
            "step": entry["step"],
            "val_wga": 100 * at["val_wga"] if at is not None else math.nan,
            "val_bca": 100 * at["val_bca"] if at is not None else math.nan,
            "test_wga": 100 * test.get("wga", math.nan),
            "test_bca": 100 * test.get("bca", math.nan),
            "test_accuracy": 100 * test.get("accuracy", math.nan),
        }
        if job.name == "dfr":  # no steps: the validation value DFR reports
            row["val_wga" if select == "val_wga" else "val_bca"] = 100 * entry["val_value"]
        for split in ("train", "val", "test"):
            for g, n in enumerate(groups.get(split, [math.nan] * 4)):
                row[f"{split}_n_g{g}"] = n
        rows.append(row)
    return rows


def collect(plan: Plan):
    """Rows of every finished run, the selected configurations marked, and the missing runs.

    Per (method, tau, seed) the configuration with the best validation WGA is ``selected``
    (ties: the first in grid order); for ERM also the one with the best validation BCA
    (``selected_bca``), whose val-BCA checkpoint is the paper's "ERM selected by val BCA".
    """
    import pandas as pd

    rows, missing = [], []
    for job in plan.jobs:
        if (Path(job.out) / "metrics.json").is_file():
            rows += run_rows(job, plan)
        else:
            missing.append(Path(job.out).name)
    table = pd.DataFrame(rows)
    table["selected"] = False
    table["selected_bca"] = False
    keys = ["name", "spurious", "tau", "seed"]
    for metric, flag in (("val_wga", "selected"), ("val_bca", "selected_bca")):
        own = table[table["select"] == metric]
        best = own.loc[own.groupby(keys, sort=False)[metric].idxmax()]
        table.loc[best.index, flag] = True
    return table, missing


def table_rows(table):
    """The rows the tables summarise: one per (method, tau, seed), both ERM selections."""
    import pandas as pd

    n_configs = table[table["select"] == "val_wga"].groupby(["name", "tau"])["value"].nunique()
    table = table.join(n_configs.rename("n_configs"), on=["name", "tau"])
    by_wga = table[table["selected"] & (table["select"] == "val_wga")].copy()
    by_wga["selected by"] = "val WGA"
    erm_bca = table[
        table["selected_bca"] & (table["select"] == "val_bca") & (table["name"] == "erm")
    ]
    erm_bca = erm_bca.copy()
    erm_bca["selected by"] = "val BCA"
    return pd.concat([erm_bca, by_wga], ignore_index=True)


def row_order(label: str) -> int:
    labels = [m[3] for m in METHODS] + [DFR_LABEL]
    return labels.index(label) if label in labels else len(labels)


def ci95(values) -> tuple[float, float, float]:
    """Mean and the 95 % t interval of the mean (NaN bounds for fewer than 2 values)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def fmt_ci(values) -> str:
    """``mean [low, high]`` (95 % t interval over seeds), ``–`` for none."""
    mean, low, high = ci95(values)
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(low):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def main_table(rows, taus) -> str:
    """Test WGA and BCA (%) per method and tau: mean [95 % interval] over seeds, n seeds."""
    header = ["method", "selected by", "configurations"]
    for tau in taus:
        header += [f"WGA tau={tau:g}", f"BCA tau={tau:g}", f"seeds tau={tau:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = rows.groupby(["method", "selected by"], sort=False)
    for (method, select), part in sorted(groups, key=lambda kv: (row_order(kv[0][0]), kv[0][1])):
        name = part["name"].iloc[0]
        varied = part["varied"].iloc[0]
        n = part["n_configs"].iloc[0]
        configs = "DFR's own C grid" if name == "dfr" else f"{n:g} ({varied})"
        cells = [method, select, configs]
        for tau in taus:
            at = part[part["tau"] == tau]
            cells += [fmt_ci(at["test_wga"]), fmt_ci(at["test_bca"]), str(len(at))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def configs_table(table, taus) -> str:
    """Every configuration: mean val WGA, mean test WGA ± std, seeds it was selected in."""
    lines = [
        "| tau | method | varied | value | k = c(1+beta) | val WGA | test WGA | selected in seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    own = table[(table["select"] == "val_wga") & (table["name"] != "dfr")]
    for tau in taus:
        at = own[own["tau"] == tau]
        groups = at.groupby(["method", "value"], sort=False)
        for (method, value), part in sorted(groups, key=lambda kv: (row_order(kv[0][0]), kv[0][1])):
            k = part["k"].iloc[0]
            std = part["test_wga"].std()
            test = f"{part['test_wga'].mean():.2f}" + (
                f" ± {std:.2f}" if math.isfinite(std) else ""
            )
            lines.append(
                f"| {tau:g} | {method} | {part['varied'].iloc[0]} | {value:g} | "
                f"{'' if not math.isfinite(k) else f'{k:g}'} | {part['val_wga'].mean():.2f} | "
                f"{test} | {int(part['selected'].sum())} of {len(part)} |"
            )
    return "\n".join(lines)


def paired_tests(rows, taus):
    """Each method's test WGA minus the best control's, paired by seed, Holm-corrected.

    The best control (per tau) is the control with the highest MEAN TEST WGA: chosen on the
    test split, so the comparison favours the controls. A paired t-test over the seeds
    both have; Holm's correction over the comparisons of one tau. Returns a frame.
    """
    import numpy as np
    import pandas as pd
    from scipy import stats

    out = []
    for tau in taus:
        at = rows[(rows["tau"] == tau) & (rows["selected by"] == "val WGA")]
        controls = at[at["method"].isin(CONTROLS)]
        if controls.empty:
            continue
        best = controls.groupby("method")["test_wga"].mean().idxmax()
        ref = at[at["method"] == best].set_index("seed")["test_wga"]
        found = []
        for method, part in at[at["method"] != best].groupby("method", sort=False):
            other = part.set_index("seed")["test_wga"]
            seeds = sorted(set(ref.index) & set(other.index))
            diff = (other.loc[seeds] - ref.loc[seeds]).to_numpy()
            p = (
                stats.ttest_rel(other.loc[seeds], ref.loc[seeds]).pvalue
                if len(seeds) > 1
                else math.nan
            )
            mean, low, high = ci95(diff)
            found.append(dict(tau=tau, method=method, against=best, seeds=len(seeds),
                              diff=mean, low=low, high=high, p=float(p)))  # fmt: skip
        ps = np.array([f["p"] for f in found])
        for f, adj in zip(found, holm(ps), strict=True):
            f["p_holm"] = adj
        out += found
    return pd.DataFrame(out)


def holm(p):
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    import numpy as np

    p = np.asarray(p, dtype=float)
    adjusted = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m, running = len(order), 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        adjusted[idx] = running
    return adjusted


def tests_markdown(tests) -> str:
    lines = [
        "| tau | method | minus (best control) | seeds | mean difference [95 % interval] | p (paired t) | p (Holm) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in tests.sort_values(["tau", "method"], ascending=[False, True]).itertuples():
        interval = "" if not math.isfinite(r.low) else f" [{r.low:+.2f}, {r.high:+.2f}]"
        p = "–" if not math.isfinite(r.p) else f"{r.p:.3g}"
        ph = "–" if not math.isfinite(r.p_holm) else f"{r.p_holm:.3g}"
        lines.append(
            f"| {r.tau:g} | {r.method} | {r.against} | {r.seeds} | {r.diff:+.2f}{interval} | {p} | {ph} |"
        )
    return "\n".join(lines)


def report(args, plan: Plan, out: Path) -> None:
    """Print the tables and write them (CSV of every run, Markdown) with their meta.json."""
    from _results_io import results_dir, write_results

    table, missing = collect(plan)
    if not args.no_dfr and "erm" in args.methods and not table.empty:
        import pandas as pd

        table = pd.concat(
            [table, pd.DataFrame(dfr_runs(args, plan, table, out))], ignore_index=True
        )
    rows = table_rows(table)
    taus = [t for t in args.taus if t in set(rows["tau"])]
    tests = paired_tests(rows, taus)
    status = (
        f"PARTIAL: {len(missing)} of {len(plan.jobs)} runs had not finished "
        f"({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''})"
        if missing
        else f"complete: all {len(plan.jobs)} runs finished"
    )
    text = "\n\n".join([
        f"# Planted bias (`benchmarks/planted_bias.py`)\n\n{status}. Spurious strength "
        f"{', '.join(f'{s:g}' for s in args.spurious)}; test split, %; mean [95 % t interval "
        "over seeds]; each method's configuration selected per seed on validation WGA.",
        "## Test WGA and BCA\n\n" + main_table(rows, taus),
        "## Paired differences in test WGA against the best control\n\n" + tests_markdown(tests),
        "## Every configuration\n\n" + configs_table(table, taus),
        *(["## Skipped\n\n" + "\n".join(f"* {s}" for s in plan.skipped)] if plan.skipped else []),
    ]) + "\n"  # fmt: skip
    print(text)
    folder = results_dir("planted_bias", quick=args.quick, given=args.results)
    meta = {
        "status": status,
        "runs": len(plan.jobs),
        "finished": len(plan.jobs) - len(missing),
        "settings": {key: getattr(args, key) for key in FULL},
    }
    on_file = table.assign(run=[f"{Path(r).parent.name}/{Path(r).name}" for r in table["run"]])
    write_results(folder, {"runs.csv": on_file.to_csv(index=False), "tables.md": text}, meta)
    print(f"written: {folder}/runs.csv, tables.md, meta.json")


# -- main --------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="the runs (benchmarks/_results/planted_bias)")
    parser.add_argument(
        "--results",
        default=None,
        help="where the CSV and Markdown tables go (docs/results/planted_bias for a full "
        "run; with --quick, benchmarks/_results/planted_bias_quick)",
    )
    parser.add_argument("--size", type=int, default=None, help="slide side (pixels; 2048)")
    parser.add_argument("--spurious", type=float, nargs="+", default=None, help="strengths (0.7)")
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None, help="(200)")
    parser.add_argument("--eval-every", type=int, default=None, help="(50)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="GERNE's batch size (two per step); the controls use twice this, one per step",
    )
    parser.add_argument(
        "--lrs", type=float, nargs="+", default=None, help="learning rates (0.005 0.01 0.02)"
    )
    parser.add_argument(
        "--etas", type=float, nargs="+", default=None, help="GroupDRO's step sizes (0.001 0.01 0.1)"
    )
    parser.add_argument(
        "--betas", type=float, nargs="+", default=None, help="GERNE's betas at c = 1 (0 0.2 0.5)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="(0 1 2 3 4)")
    parser.add_argument("--taus", type=float, nargs="+", default=None, help="(0.1 0.03)")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHOD_CHOICES,
        default=None,
        help="(every one but erm_cb, the weakest control, left out for CPU time; --quick: all)",
    )
    parser.add_argument("--no-dfr", action="store_true", help="leave out the DFR heads")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: tables of the runs already finished in --out (marked partial "
        "when some are missing)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="training processes side by side")
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def prepare(args, out: Path) -> Plan:
    """Slides, patch caches, group counts and the plan of every spurious strength."""
    from napari_patchwise.groups import group_counts
    from napari_patchwise.training.data import PatchSettings, load_cohort

    plan = Plan()
    for spurious in args.spurious:
        slides = QUICK_SLIDES if args.quick else out / "slides"
        manifest = make_slides(slides, size=args.size, spurious=spurious)
        # the patch caches are built once here, before the parallel runs read them
        cohort = load_cohort(manifest, PatchSettings(patch_size=args.patch_size))
        describe_cohort(cohort, args.taus, spurious)
        plan.manifests[spurious] = manifest
        for tau in args.taus:
            plan.groups[(spurious, tau)] = {
                split: group_counts(t["label"], t["tissue_ratio"], tau).tolist()
                for split in ("train", "val", "test")
                for t in [cohort.table(split)]
            }
        level = plan_level(args, manifest, cohort, spurious, out / f"spurious{spurious:g}")
        plan.jobs += level.jobs
        plan.skipped += level.skipped
    return plan


def main(argv=None) -> int:
    args = parse_args(argv)
    # Quick runs train afresh each time, in a temporary folder (a finished run in --out
    # would be reused), removed at the end.
    scratch = None
    if args.out is None:
        scratch = tempfile.mkdtemp(prefix="planted_bias_quick_") if args.quick else None
        args.out = scratch or "benchmarks/_results/planted_bias"
    out = Path(args.out)
    t0 = time.perf_counter()
    plan = prepare(args, out)
    t_data = time.perf_counter() - t0
    print(f"slides and patch caches: {t_data:.0f} s; {len(plan.jobs)} runs", flush=True)
    t1 = time.perf_counter()
    if not args.report_only:
        run_all(plan.jobs, args.jobs)
    t_train = time.perf_counter() - t1
    # CPU seconds of the (finished) training processes: on a shared machine the wall time
    # depends on the others' load; with free cores the wall time is about cpu / jobs.
    cpu = os.times()
    cpu_train = cpu.children_user + cpu.children_system
    timing = (
        f"data {t_data:.0f} s, training {t_train:.0f} s ({len(plan.jobs)} runs, "
        f"{args.jobs} side by side), total {time.perf_counter() - t0:.0f} s; training CPU "
        f"time {cpu_train:.0f} s"
    )
    print(timing, flush=True)
    report(args, plan, out)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
        print("(quick smoke run: 20 steps cannot separate the methods)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
