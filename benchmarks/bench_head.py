"""Head-only training and embedding: speed, and what last-layer debiasing buys.

Three parts, each against a baseline measured in the same run:

1. **Head retraining time** on a cohort of ``--patches`` (>= 100,000) patches of
   SYNTHETIC 512-wide feature vectors (planted: the label and the tissue ratio shift the
   vectors; the slides of the manifest are tiny files that only give the store its
   cohort): ``patchwise train --features`` with GERNE (c = 0.5, beta = 1) and DFR,
   whole runs (data load, steps, evaluations, checkpoints, test). Target: under 10 s.
2. **Embedding rate**: ``patchwise embed`` of the planted-bias cohort's real patches with
   a ResNet-18 backbone (random init: speed only) against the same backbone's forward
   pass on the same patches already in memory as normalised float tensors, same batch
   size and threads. Target: >= 0.8x.
3. **Planted bias** (``benchmarks/planted_bias.py``'s slides and settings): per seed
   and tau, full ERM and full GERNE (c = 0.5, beta = 1) runs of smallcnn, then the ERM
   run's features embedded and a GERNE head and a DFR head trained on them; test WGA and
   BCA (mean ± std over seeds).

    .venv/bin/python benchmarks/bench_head.py [--quick] [--out DIR] [--patches N]
        [--parts time embed planted]

``--quick``: 20,000 synthetic patches for part 1 (the 100,000-patch figure needs the full
run), 1024 px slides, one seed, tau = 0.1, spurious = 1, 20 full-training steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from _protocol import Protocol, add_arguments, summarize


def synthetic_store(folder: Path, n: int, dim: int = 512, seed: int = 0) -> tuple[Path, Path]:
    """A manifest of three tiny slides and a store of ``n`` planted synthetic vectors."""
    import pandas as pd
    import tifffile

    from napari_patchwise.cohort.manifest import read_manifest
    from napari_patchwise.io.feature_store import create_store, finish_store, write_chunk
    from napari_patchwise.training.data import PatchSettings, cache_key
    from napari_patchwise.training.embed import build_spec
    from napari_patchwise.training.models import build_architecture

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split"]
    for split in ("train", "val", "test"):
        tifffile.imwrite(folder / f"{split}.tif", np.zeros((16, 16), np.uint8))
        tifffile.imwrite(folder / f"{split}_mask.tif", np.zeros((16, 16), np.uint8))
        lines.append(f"{split}.tif,{split}_mask.tif,{split}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    settings = PatchSettings(patch_size=64)
    rng = np.random.default_rng(seed)
    sizes = {"train": int(n * 0.7), "val": int(n * 0.15)}
    sizes["test"] = n - sizes["train"] - sizes["val"]
    tables, blocks, slides = [], [], []
    for entry in read_manifest(manifest):
        m = sizes[entry.split]
        label = rng.integers(0, 2, m)
        # planted: tumor patches have large tissue 90 % of the time
        large = np.where(label == 1, rng.random(m) < 0.9, rng.random(m) < 0.1)
        ratio = np.where(large, rng.uniform(0.2, 1, m), rng.uniform(0, 0.1, m))
        vectors = rng.normal(size=(m, dim)) + 0.3 * label[:, None] * (np.arange(dim) < 16)
        vectors += 0.6 * large[:, None] * (np.arange(dim) >= dim - 16)
        tables.append(pd.DataFrame({"slide": entry.slide, "label": label, "tissue_ratio": ratio}))
        blocks.append(vectors.astype(np.float16))
        key = cache_key(entry, settings)
        slides.append({"slide": entry.slide, "split": entry.split, "key": key, "n_patches": m})
    model = build_architecture("resnet18", 3)
    meta = {"model_name": "resnet18", "in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3,
            "patch_size": 64}  # fmt: skip
    ckpt = {"model": model.state_dict(), **meta}
    source = {"kind": "synthetic"}
    spec = {**build_spec(source, meta, settings, [], {}, dim, chunk_rows=8192), "slides": slides}
    store = folder / "features.zarr"
    create_store(store, spec, tables, ckpt)
    for i, block in enumerate(blocks):
        for k in range(-(-len(block) // 8192)):
            write_chunk(store, i, k, block[k * 8192 : (k + 1) * 8192])
    finish_store(store)
    return manifest, store


def head_times(folder: Path, n: int, protocol) -> dict[str, list[dict]]:
    """Whole ``train --features`` runs, GERNE and DFR interleaved (``_protocol.py``)."""
    from napari_patchwise.training.loop import TrainConfig, train

    manifest, store = synthetic_store(folder / "store", n)
    calls = {"gerne": 0, "dfr": 0}

    def run(method: str):
        def call() -> None:
            calls[method] += 1  # a fresh run directory each call
            config = TrainConfig(
                manifest=str(manifest), out=str(folder / f"{method}{calls[method]}"),
                features=str(store), method=method, steps=1000, eval_every=250,
                batch_size=128, c=0.5, beta=1.0, num_threads=1, device="cpu",
            )  # fmt: skip
            train(config)

        return call

    return protocol.interleave({"GERNE": run("gerne"), "DFR": run("dfr")})


def embed_rate(manifest: Path, folder: Path, patch_size: int, protocol, batch: int = 128):
    """Patches per second: ``embed`` vs the backbone's forward on in-memory tensors.

    Interleaved in rotating order over the protocol's repeats (``_protocol.py``); each
    ``embed`` call writes a new store, and the forward pass uses the backbone the first
    one saved.
    """
    import torch

    from napari_patchwise.training.data import PatchSettings
    from napari_patchwise.training.embed import EmbedSource, cohort_jobs, embed, load_backbone

    torch.set_num_threads(1)
    settings = PatchSettings(patch_size=patch_size)
    jobs = cohort_jobs(manifest, settings)  # the patch caches, built before any timing
    n = sum(len(j) for j in jobs)
    patches = torch.from_numpy(np.concatenate([np.load(j.cache) for j in jobs]).astype(np.float32))
    state: dict = {"calls": 0}

    def run_embed() -> dict:
        state["calls"] += 1
        ticks = []
        t0 = time.perf_counter()
        out = embed(
            manifest, folder / f"emb{state['calls']}.zarr", EmbedSource(backbone="resnet18"),
            settings=settings, device="cpu", batch_size=batch,
            progress=lambda d, t: ticks.append(time.perf_counter()),
        )  # fmt: skip
        whole = n / (time.perf_counter() - t0)
        state.setdefault("model", out / "model.pt")
        # from the first chunk's start (model load included) to the last chunk written
        return {"patches": n, "rate": whole, "loop_rate": n / (ticks[-1] - ticks[0])}

    def run_forward() -> dict:
        backbone, meta = load_backbone(state["model"], "cpu")
        mean, std = (torch.tensor(meta[k])[:, None, None] for k in ("mean", "std"))
        x = (patches - mean) / std
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in range(0, n, batch):
                backbone(x[b : b + batch])
        return {"patches": n, "rate": n / (time.perf_counter() - t0)}

    return protocol.interleave({"embed": run_embed, "forward": run_forward})


def planted(args, out: Path) -> list[dict]:
    """Full ERM / GERNE vs GERNE and DFR heads on the ERM run's features."""
    import json

    from napari_patchwise.training.embed import EmbedSource, embed
    from napari_patchwise.training.loop import TrainConfig, train
    from planted_bias import QUICK_SLIDES, make_slides, run_one

    slides = QUICK_SLIDES if args.quick else out / "slides"
    rows = []
    for spurious in args.spurious:
        manifest = make_slides(slides, size=args.size, spurious=spurious)
        for tau in args.taus:
            for seed in args.seeds:
                common = dict(manifest=str(manifest), model="smallcnn", patch_size=32,
                              steps=args.steps, eval_every=args.eval_every, lr=0.01,
                              weight_decay=1e-4, num_threads=1, eval_batch_size=128,
                              tau=tau, seed=seed, select="val_wga")  # fmt: skip
                tag = f"s{spurious:g}_tau{tau:g}_seed{seed}"
                runs = {
                    "ERM (full)": dict(common, method="erm", batch_size=64),
                    "GERNE (full)": dict(common, method="gerne", batch_size=32, c=0.5, beta=1.0),
                }
                for label, options in runs.items():
                    options["out"] = str(out / f"{label.split()[0].lower()}_{tag}")
                    run_one(options)
                store = out / f"features_{tag}.zarr"
                if not store.exists():
                    embed(manifest, store, EmbedSource(checkpoint=runs["ERM (full)"]["out"]),
                          device="cpu")  # fmt: skip
                heads = {
                    "GERNE head": dict(
                        method="gerne", batch_size=32, c=0.5, beta=1.0, steps=500, eval_every=50
                    ),
                    "DFR head": dict(method="dfr"),
                }
                for label, extra in heads.items():
                    head_out = out / f"{label.split()[0].lower()}_head_{tag}"
                    if not (head_out / "metrics.json").exists():
                        options = dict(common, **extra, features=str(store), out=str(head_out))
                        train(TrainConfig.from_options(options))
                    runs[label] = {"out": str(head_out)}
                for label, options in runs.items():
                    metrics = json.loads((Path(options["out"]) / "metrics.json").read_text())
                    test = metrics["test"]
                    rows.append(dict(method=label, spurious=spurious, tau=tau, seed=seed,
                                     wga=100 * test["wga"], bca=100 * test["bca"]))  # fmt: skip
    return rows


def report_times(out: Path, n: int, protocol) -> dict[str, str]:
    records = head_times(out / "synthetic", n, protocol)
    rows = ["| method | patches | seconds (min / median) | target < 10 s |", "|---|---|---|---|"]
    for method, (low, median) in summarize(records).items():
        ok = "yes" if median < 10 else "NO"
        print(f"1. {method} head on {n} patches: {low:.1f} / {median:.1f} s (target < 10 s: {ok})")
        rows.append(f"| {method} head | {n} | {low:.1f} / {median:.1f} | {ok} |")
    return {"head_times.md": "\n".join(rows) + "\n"}


def report_embed(args, out: Path, protocol) -> dict[str, str]:
    from planted_bias import QUICK_SLIDES, make_slides

    slides = QUICK_SLIDES if args.quick else out / "slides"
    manifest = make_slides(slides, size=args.size, spurious=args.spurious[0])
    records = embed_rate(manifest, out, 32, protocol)

    def rates(case: str, key: str) -> list[float]:
        return [r[key] for r in records[case]]

    rows = {
        "forward only (in-memory tensors)": rates("forward", "rate"),
        "`embed`, chunk loop": rates("embed", "loop_rate"),
        "`embed`, whole call": rates("embed", "rate"),
    }
    forward = statistics.median(rows["forward only (in-memory tensors)"])
    n = records["embed"][0]["patches"]
    table = ["| | patches/s (best / median) | vs forward-only (medians) |", "|---|---|---|"]
    for name, values in rows.items():
        median = statistics.median(values)
        table.append(f"| {name} | {max(values):.0f} / {median:.0f} | {median / forward:.2f}x |")
    print(f"2. embedding {n} patches (resnet18, 32 px, 1 thread):\n" + "\n".join(table))
    return {"embed_rate.md": f"{n} patches\n\n" + "\n".join(table) + "\n"}


def report_planted(args, out: Path) -> dict[str, str]:
    import pandas as pd

    table = pd.DataFrame(planted(args, out))
    keys = ["spurious", "tau", "method"]
    summary = table.groupby(keys, sort=False)[["wga", "bca"]].agg(["mean", "std"])
    print("3. planted bias, test WGA / BCA in % (mean, std over seeds):")
    print(summary.round(2).to_string())
    return {"planted_runs.csv": table.to_csv(index=False),
            "planted_summary.md": summary_markdown(summary)}  # fmt: skip


def summary_markdown(summary) -> str:
    """The planted summary as a Markdown table: mean ± std (%) of WGA and BCA."""
    lines = ["| spurious | tau | method | WGA | BCA |", "|---|---|---|---|---|"]
    for (spurious, tau, method), r in summary.iterrows():
        cells = [f"{r[(m, 'mean')]:.2f} ± {r[(m, 'std')]:.2f}" for m in ("wga", "bca")]
        lines.append(f"| {spurious:g} | {tau:g} | {method} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None, help="keep the runs here (reused on a rerun)")
    parser.add_argument("--patches", type=int, default=100_000)
    parser.add_argument(
        "--parts", nargs="+", choices=("time", "embed", "planted"),
        default=["time", "embed", "planted"],
    )  # fmt: skip
    parser.add_argument(
        "--spurious", type=float, nargs="+", default=None,
        help="planted strengths of part 3 (full: 1.0 0.7; 0.7 is the paper's regime)",
    )  # fmt: skip
    add_arguments(parser)  # --repeats, --results, --allow-loaded (_protocol.py)
    args = parser.parse_args(argv)
    spurious = args.spurious
    quick = {"size": 1024, "steps": 20, "eval_every": 10, "seeds": [0], "taus": [0.1],
             "spurious": [1.0]}  # fmt: skip
    full = {"size": 2048, "steps": 200, "eval_every": 25, "seeds": [0, 1, 2],
            "taus": [0.1, 0.03], "spurious": [1.0, 0.7]}  # fmt: skip
    for key, value in (quick if args.quick else full).items():
        setattr(args, key, value)
    if spurious:
        args.spurious = spurious
    protocol = Protocol.from_args("bench_head", args)  # refuses a loaded machine up front
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        parts = {
            "time": lambda: report_times(out, 20_000 if args.quick else args.patches, protocol),
            "embed": lambda: report_embed(args, out, protocol),
            "planted": lambda: report_planted(args, out),
        }
        for part in args.parts:
            # each part's files and its own meta (<part>.meta.json): a later run of
            # another part leaves them as they are
            protocol.write(parts[part](), meta_name=f"{part}.meta.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
