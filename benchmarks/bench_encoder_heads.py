"""Heads (ERM, GERNE, DFR) on the features of a timm ViT next to a ResNet's, planted bias.

The planted-bias cohort (``benchmarks/planted_bias.py``'s slides: 1024 px, 512 with
``--quick``; spurious 0.7, the paper's regime; 32 px patches) is embedded once with a
ResNet-18 backbone and once with a timm ViT-S/16 (``timm:vit_small_patch16_224`` at a
64 px input: the 32 px patches upsampled twice, 16 tokens; the slide's channels taken as
R, G, B). Both are RANDOMLY INITIALISED: no pretrained weights can be fetched here. On
each store an ERM head, a GERNE head (c = 0.5, beta = 1) and a DFR head are trained at
tau = 0.1 (``patchwise train --features``), one run per seed; the table gives test WGA and
BCA (mean ± std over seeds).

With random weights these rows compare the two pipelines (a random convolutional and a
random transformer feature map under the same heads), not the encoders: they say little
about what a pretrained pathology encoder's features would give. To measure a real
encoder, embed the cohort with its weights (``patchwise embed --backbone uni --weights
FILE``, docs/encoders.md) and train the same heads on that store.

    nice -n 10 .venv/bin/python benchmarks/bench_encoder_heads.py [--quick] [--out DIR]
        [--seeds 0 1 2] [--results DIR]

Writes ``encoder_heads.md``, ``encoder_heads.csv`` and ``encoders.meta.json`` into
``docs/results/bench_head/`` (beside bench_head's tables; ``--quick``:
``benchmarks/_results/bench_head_quick/``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The encoders (random weights): table name -> EmbedSource keywords.
ENCODERS = {
    "ResNet-18 (random)": {"backbone": "resnet18"},
    "ViT-S/16 (random, 64 px input)": {"backbone": "timm:vit_small_patch16_224", "input_size": 64},
}
HEADS = {
    "ERM head": dict(method="erm", batch_size=64, steps=500, eval_every=50),
    "GERNE head": dict(method="gerne", batch_size=32, c=0.5, beta=1.0, steps=500, eval_every=50),
    "DFR head": dict(method="dfr"),
}
TAU = 0.1
SPURIOUS = 0.7
CAVEAT = (
    "Planted-bias cohort (spurious 0.7, tau 0.1), heads on the features of RANDOMLY "
    "INITIALISED encoders: the rows compare the pipelines, not the encoders; a pretrained "
    "encoder's features can give very different numbers."
)


def embed_store(manifest: Path, store: Path, source: dict) -> float:
    """Embed the cohort into ``store`` (skipped when it exists); seconds taken."""
    import warnings

    from napari_patchwise.training.data import PatchSettings
    from napari_patchwise.training.embed import EmbedSource, embed

    if store.exists():
        return 0.0
    start = time.perf_counter()
    with warnings.catch_warnings():  # random init and the channel mapping: said above
        warnings.simplefilter("ignore", UserWarning)
        embed(manifest, store, EmbedSource(**source), settings=PatchSettings(32), device="cpu",
              batch_size=128)  # fmt: skip
    return time.perf_counter() - start


def head_rows(manifest: Path, store: Path, encoder: str, seeds, out: Path) -> list[dict]:
    """One row per head and seed: test WGA and BCA (%) of a head run on ``store``."""
    import json

    from napari_patchwise.training.loop import TrainConfig, train

    common = dict(manifest=str(manifest), patch_size=32, lr=0.01, weight_decay=1e-4,
                  num_threads=1, eval_batch_size=512, tau=TAU, select="val_wga",
                  features=str(store))  # fmt: skip
    rows = []
    for seed in seeds:
        for label, extra in HEADS.items():
            run = out / f"{store.stem}_{label.split()[0].lower()}_seed{seed}"
            if not (run / "metrics.json").exists():
                train(TrainConfig.from_options(dict(common, **extra, seed=seed, out=str(run))))
            test = json.loads((run / "metrics.json").read_text())["test"]
            rows.append(dict(encoder=encoder, method=label, tau=TAU, seed=seed,
                             wga=100 * test["wga"], bca=100 * test["bca"]))  # fmt: skip
    return rows


def tables(rows: list[dict]) -> dict[str, str]:
    """``encoder_heads.csv`` (every run) and ``encoder_heads.md`` (mean ± std)."""
    import pandas as pd

    table = pd.DataFrame(rows)
    summary = table.groupby(["encoder", "method"], sort=False)[["wga", "bca"]]
    summary = summary.agg(["mean", "std"])
    lines = [CAVEAT, "", "| encoder | head | test WGA (%) | test BCA (%) |", "|---|---|---|---|"]
    for (encoder, method), r in summary.iterrows():
        cells = [f"{r[(m, 'mean')]:.2f} ± {r[(m, 'std')]:.2f}" for m in ("wga", "bca")]
        lines.append(f"| {encoder} | {method} | {cells[0]} | {cells[1]} |")
    seeds = sorted(table["seed"].unique())
    lines += ["", f"Seeds {', '.join(map(str, seeds))} (mean ± std over seeds)."]
    return {"encoder_heads.csv": table.to_csv(index=False),
            "encoder_heads.md": "\n".join(lines) + "\n"}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 px slides, one seed")
    parser.add_argument("--out", default=None, help="keep the stores and runs here (reused)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--results", default=None, help="where the tables go")
    args = parser.parse_args(argv)
    from _results_io import results_dir, write_results
    from planted_bias import QUICK_SLIDES, make_slides

    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    folder = results_dir("bench_head", quick=args.quick, given=args.results)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        slides = QUICK_SLIDES if args.quick else out / "slides"
        manifest = make_slides(slides, size=512 if args.quick else 1024, spurious=SPURIOUS)
        rows, seconds = [], {}
        for name, source in ENCODERS.items():
            store = out / f"enc_{source['backbone'].replace(':', '_')}.zarr"
            seconds[name] = round(embed_store(manifest, store, source), 1)
            print(f"embedded with {name}: {seconds[name]} s", flush=True)
            rows += head_rows(manifest, store, name, seeds, out)
        files = tables(rows)
        print(files["encoder_heads.md"])
        extra = {"embed_seconds": seconds, "random_weights": True}
        write_results(folder, files, extra, meta_name="encoders.meta.json")
    print(f"written: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
