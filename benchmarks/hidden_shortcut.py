"""Hidden-shortcut benchmark: a planted artefact nobody names, found and undone without groups.

Builds train / val / test synthetic slides with ``patchwise synth --spurious 0
--artefact KIND=STRENGTH`` (tissue size is not spurious; the artefact, on whole patches
of the training patch grid, goes with the label at STRENGTH on the training slides) and
the validation and test slides at ``--artefact-eval`` strength (0 by default: the
artefact on 10 % of either label, the shortcut broken there, as Waterbirds' evaluation
splits are), never tells any method about the artefact, and reports:

* **discovery** — ``patchwise discover`` on the ERM run's test predictions and the
  features of its own model (``patchwise embed --checkpoint``): of the top three slices,
  the one closest to the artefact's patches (IoU), its precision and recall against the
  ground-truth side table (``<slide>.artefacts.parquet``), its held-out score, the
  cross-fitted noise floor and whether it beats it;
* **debiasing** — test WGA over the four (label x artefact) groups, the groups the
  shortcut makes, of ERM, JTT and GERNE with inferred groups (no groups read), and of the
  known-group methods GERNE and GroupDRO, which are given the groups the project knows
  (tissue size at tau), not the artefact; and each run's known-group (tissue) test WGA;
  the test patches in each (label x artefact) group.

Each seed ``s`` of ``--seeds`` (0 1 2) is a cohort of its own (the slides' synth seeds
plus ``100 * s``, so the artefact falls on other patches) and the training seed ``s`` of
every method: the intervals cover both. Per method: the mean test WGA (artefact groups and
tissue groups) with its 95 % t interval over the seeds (``planted_bias.fmt_ci``); per seed
the discovery figures. The numbers are reported, not judged (exit status 0 when every
step ran). A full run writes ``runs.csv`` (one row per seed and method), ``discovery.csv``
(one row per seed), ``tables.md`` and ``meta.json`` (command line, commit, load) into
``docs/results/hidden_shortcut/`` (``benchmarks/_results_io.py``; ``--results`` elsewhere).

    .venv/bin/python benchmarks/hidden_shortcut.py [--out DIR] [--artefact pen=0.9]
        [--artefact-eval 0] [--size 1536] [--steps 200] [--seeds 0 1 2] [--results DIR]

``--quick`` (what ``make bench`` runs): 512 px slides, 12 steps, 4 permutations, one seed,
in a temporary folder, tables in ``benchmarks/_results/hidden_shortcut_quick/``. 12 steps
cannot separate the methods: the quick mode checks that the whole chain runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

LAYOUT = {"train": [11, 12, 13], "val": [21], "test": [31, 32]}
PATCH = 32
QUICK = {"size": 512, "steps": 12, "eval_every": 6, "permutations": 4}
FULL = {"size": 1536, "steps": 200, "eval_every": 25, "permutations": 20}
METHODS = {
    "erm": [],
    "jtt": ["--method", "jtt"],
    "gerne-inferred": ["--method", "gerne-inferred", "--beta", "1"],
    "gerne (tissue groups)": ["--method", "gerne", "--beta", "1"],
    "groupdro (tissue groups)": ["--method", "groupdro"],
}


def cli(*args: str) -> None:
    from napari_patchwise.cli.main import main

    code = main([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"patchwise {' '.join(map(str, args))} failed with exit code {code}")


def make_cohort(folder: Path, size: int, artefact: str, evaluation: str, offset: int = 0) -> Path:
    """The slides (each with its artefact table) and their manifest; ``offset`` is added
    to every slide's synth seed (one cohort per benchmark seed). The training slides get
    ``artefact``, the validation and test slides ``evaluation`` (the shortcut broken)."""
    lines = ["image,mask,split"]
    for split, seeds in LAYOUT.items():
        planted = artefact if split == "train" else evaluation
        for seed in (s + offset for s in seeds):
            slide = folder / f"s{seed}.ome.tif"
            if not slide.exists():
                cli(
                    "synth", "--size", size, size, "--out", slide, "--seed", seed,
                    "--spurious", "0", "--artefact", planted,
                    "--artefact-patch-size", PATCH, "--quiet",
                )  # fmt: skip
            lines.append(f"{slide.name},s{seed}_mask.tif,{split}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def artefact_table(folder: Path, kind: str):
    import pandas as pd

    tables = [pd.read_parquet(p) for p in sorted(folder.glob("*.artefacts.parquet"))]
    table = pd.concat(tables, ignore_index=True)
    table = table[table.artefact == kind][["slide", "row", "col", "present"]]
    return table.astype({"present": bool})


def artefact_groups(predictions, truth) -> dict[str, tuple[int, float]]:
    """``(size, accuracy)`` of each (label, artefact present) group of the test patches."""
    joined = predictions.merge(truth, on=["slide", "row", "col"], how="left")
    joined["present"] = joined["present"].fillna(False).astype(bool)
    correct = joined["pred"].to_numpy() == joined["label"].to_numpy()
    groups = {}
    for y in (0, 1):
        for a in (False, True):
            members = (joined.label == y).to_numpy() & (joined.present == a).to_numpy()
            if members.any():
                groups[f"y{y}_{'with' if a else 'without'}"] = (
                    int(members.sum()),
                    float(correct[members].mean()),
                )
    return groups


def wga_by_artefact(predictions, truth) -> float:
    """Worst accuracy over the (label, artefact present) groups of the test patches."""
    return float(min(acc for _, acc in artefact_groups(predictions, truth).values()))


def discovery(folder: Path, run: Path, truth, permutations: int) -> dict:
    import numpy as np
    import pandas as pd

    store = folder / "erm-features.zarr"
    if not store.exists():
        cli("embed", folder / "cohort.csv", "--checkpoint", run, "--out", store, "--quiet")
    out = folder / "slices.parquet"
    cli(
        "discover", run / "predictions.parquet", "--features", store, "--out", out,
        "--permutations", permutations,
    )  # fmt: skip
    per_patch = pd.read_parquet(out).merge(truth, on=["slide", "row", "col"], how="left")
    pen = per_patch["present"].fillna(False).to_numpy(dtype=bool)
    summary = json.loads(out.with_suffix(".json").read_text())
    best = None
    for s in summary["slices"][:3]:
        members = per_patch["slice"].to_numpy() == s["id"]
        hit = int((members & pen).sum())
        iou = hit / max(int((members | pen).sum()), 1)
        row = {
            "rank": s["rank"],
            "iou": iou,
            "precision": hit / max(int(members.sum()), 1),
            "recall": hit / max(int(pen.sum()), 1),
            "above_noise": s["above_noise"],
            "held_out_score": s.get("held_out_score", float("nan")),
            "accuracy": s["accuracy"],
        }
        if best is None or iou > best["iou"]:
            best = row
    return {"best_of_top3": best, "noise_floor": summary["noise_floor"], "n": len(pen),
            "artefact_patches": int(np.sum(pen))}  # fmt: skip


def train_all(folder: Path, settings: dict, seed: int, truth) -> dict:
    import pandas as pd

    common = [
        "--model", "smallcnn", "--patch-size", PATCH, "--batch-size", 32,
        "--steps", settings["steps"], "--eval-every", settings["eval_every"],
        "--seed", seed, "--num-threads", 1, "--quiet",
    ]  # fmt: skip
    results = {}
    for name, flags in METHODS.items():
        out = folder / "runs" / name.split(" ")[0]
        t0 = time.perf_counter()
        if not (out / "metrics.json").exists():
            cli("train", folder / "cohort.csv", *flags, *common, "--out", out, "--overwrite")
        metrics = json.loads((out / "metrics.json").read_text())
        predictions = pd.read_parquet(out / "predictions.parquet")
        groups = artefact_groups(predictions, truth)
        results[name] = {
            "artefact_wga": min(acc for _, acc in groups.values()),
            **{f"n_{g}": n for g, (n, _) in groups.items()},
            "tissue_wga": metrics["test"]["wga"],
            "accuracy": metrics["test"]["accuracy"],
            "seconds": time.perf_counter() - t0,
        }
    return results


def one_seed(
    folder: Path, settings: dict, artefact: str, evaluation: str, seed: int
) -> tuple[dict, dict]:
    """Cohort ``seed`` in ``folder``: every method's test figures and the discovery."""
    folder.mkdir(parents=True, exist_ok=True)
    make_cohort(folder, settings["size"], artefact, evaluation, offset=100 * seed)
    truth = artefact_table(folder, artefact.split("=")[0])
    results = train_all(folder, settings, seed, truth)
    found = discovery(folder, folder / "runs" / "erm", truth, settings["permutations"])
    return results, found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small slides, few steps, one seed")
    p.add_argument("--out", type=Path, default=None, help="working folder (kept)")
    p.add_argument("--results", default=None, help="where the tables go (see _results_io)")
    p.add_argument(
        "--artefact", default="pen=0.9", help="KIND=STRENGTH on the training slides (pen=0.9)"
    )
    p.add_argument(
        "--artefact-eval",
        type=float,
        default=0.0,
        help="the artefact's strength on the validation and test slides (0: independent of "
        "the label, the shortcut broken)",
    )
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="(0 1 2; quick: 0)")
    args = p.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    settings.update({k: v for k, v in (("size", args.size), ("steps", args.steps)) if v})
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    evaluation = f"{args.artefact.split('=')[0]}={args.artefact_eval:g}"
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        t0 = time.perf_counter()
        rows, found = [], []
        for seed in seeds:
            results, discovered = one_seed(
                root / f"seed{seed}", settings, args.artefact, evaluation, seed
            )
            rows += [{"seed": seed, "method": name, **r} for name, r in results.items()]
            found.append({"seed": seed, **discovered})
        report(args, settings, seeds, rows, found, time.perf_counter() - t0)
    return 0


def tables(args, settings: dict, seeds: list[int], rows, found) -> tuple[str, object, object]:
    """``tables.md`` text, and the per-run and per-seed discovery frames (the CSVs)."""
    import pandas as pd

    from planted_bias import fmt_ci

    runs = pd.DataFrame(rows)
    lines = [
        "| method | test WGA, label x artefact (%) | test WGA, tissue groups (%) "
        "| test accuracy (%) | seeds |",
        "|---|---|---|---|---|",
    ]
    for name in METHODS:
        part = runs[runs.method == name]
        lines.append(
            f"| {name} | {fmt_ci(100 * part.artefact_wga)} | {fmt_ci(100 * part.tissue_wga)} "
            f"| {fmt_ci(100 * part.accuracy)} | {len(part)} |"
        )
    disc = pd.DataFrame(
        [{"seed": f["seed"], **f["best_of_top3"], "noise_floor": f["noise_floor"],
          "patches": f["n"], "artefact_patches": f["artefact_patches"]} for f in found]
    )  # fmt: skip
    dlines = [
        "| seed | patches (with the artefact) | best of top 3: rank | IoU | precision | recall "
        "| slice accuracy | held-out score | noise floor (cross-fitted) | above it |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, d in disc.iterrows():
        dlines.append(
            f"| {d.seed} | {d.patches} ({d.artefact_patches}) | {d['rank']} | {d.iou:.2f} "
            f"| {d.precision:.2f} | {d.recall:.2f} | {d.accuracy:.2f} "
            f"| {d.held_out_score:.4f} | {d.noise_floor:.4f} | {'yes' if d.above_noise else 'no'} |"
        )
    glines = [
        "| seed | non-tumor without | non-tumor with | tumor without | tumor with |",
        "|---|---|---|---|---|",
    ]
    for seed in seeds:
        erm = runs[(runs.method == "erm") & (runs.seed == seed)].iloc[0]
        sizes = [erm.get(f"n_y{y}_{a}", 0) for y in (0, 1) for a in ("without", "with")]
        glines.append(f"| {seed} | " + " | ".join(str(int(n)) for n in sizes) + " |")
    text = "\n\n".join([
        "# Hidden shortcut (`benchmarks/hidden_shortcut.py`)",
        f"Artefact {args.artefact} on the training slides, strength {args.artefact_eval:g} "
        "on the validation and test slides (the shortcut broken there, as in Waterbirds' "
        "evaluation splits); never given to any method; tissue size not spurious "
        f"(`--spurious 0`); {settings['size']} px slides, {settings['steps']} steps, small "
        f"CNN, {PATCH} px patches; seeds {' '.join(map(str, seeds))} (each its own cohort "
        "and training seed). Test split, %; mean [95 % t interval over seeds].",
        "## Test WGA\n\n" + "\n".join(lines),
        "## Test patches per (label x artefact) group, per seed\n\n" + "\n".join(glines),
        "## Discovery (ERM run, test split, its own features), per seed\n\n"
        + "\n".join(dlines),
    ]) + "\n"  # fmt: skip
    return text, runs, disc


def report(args, settings, seeds, rows, found, seconds) -> None:
    """Print the tables and write them with their meta.json (``_results_io``)."""
    from _results_io import results_dir, write_results

    text, runs, disc = tables(args, settings, seeds, rows, found)
    print(text)
    print(f"total {seconds:.0f} s")
    folder = results_dir("hidden_shortcut", quick=args.quick, given=args.results)
    meta = {"settings": {**settings, "seeds": seeds, "artefact": args.artefact,
                         "artefact_eval": args.artefact_eval},
            "seconds": round(seconds)}  # fmt: skip
    files = {"runs.csv": runs.to_csv(index=False), "discovery.csv": disc.to_csv(index=False),
             "tables.md": text}  # fmt: skip
    write_results(folder, files, meta)
    print(f"written: {folder}/runs.csv, discovery.csv, tables.md, meta.json")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
