"""Draw docs/images/figure1_sample.png: Figure 1 of a synthetic sample slide.

No trained model is involved: predictions come from a deliberately biased rule that, like
an ERM model exploiting the spurious attribute, calls a patch tumor when it holds a lot of
tissue (plus noise). The caption in the figure says so.

    .venv/bin/python benchmarks/figure1_sample.py [--out docs/images/figure1_sample.png]

``--quick`` (what ``make bench`` runs): a 1536 x 1536 slide, drawn to
benchmarks/_results/figure1_sample_quick.png so that the documented figure is left alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUICK_OUT = ROOT / "benchmarks" / "_results" / "figure1_sample_quick.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="(docs/images/figure1_sample.png)")
    parser.add_argument("--size", type=int, default=None, help="slide side (6144; quick 1536)")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true", help="small smoke run (make bench)")
    args = parser.parse_args()
    if args.out is None:
        args.out = QUICK_OUT if args.quick else ROOT / "docs" / "images" / "figure1_sample.png"
    if args.size is None:
        args.size = 1536 if args.quick else 6144

    from napari_patchwise.analysis.metrics import evaluate
    from napari_patchwise.patches.grid import PatchGrid, patch_stats
    from napari_patchwise.reporting.figures import figure1, group_count_table
    from napari_patchwise.slide import Slide
    from napari_patchwise.synthetic.slides import SynthConfig, synth_slide

    config = SynthConfig(size=(args.size, args.size), seed=7, chunk=2048)
    image, mask = synth_slide(config)
    slide = Slide(levels=(image,), channel_names=config.channel_names, name="sample")
    table = patch_stats(slide.with_mask(mask), PatchGrid(args.patch))
    table = table[table["n_tissue"] > 0].reset_index(drop=True)  # background-only patches out

    # A biased "model": tumor score rises with tissue size, only partly with the label.
    rng = np.random.default_rng(0)
    score = 1.6 * table["tissue_ratio"] + 1.2 * table["label"] + rng.normal(0, 0.35, len(table))
    table["prob"] = 1 / (1 + np.exp(-4 * (score - 1.4)))
    ev = evaluate(table["label"], table["tissue_ratio"], prob=table["prob"], tau=args.tau)
    print(group_count_table(table, args.tau, by=None).to_string())
    print(f"accuracy {ev.accuracy:.3f}  WGA {ev.wga:.3f} ({ev.worst_group})  BCA {ev.bca:.3f}")

    fig = figure1(
        table,
        tau=args.tau,
        title=(
            f"Synthetic sample slide ({args.size} x {args.size}, {args.patch}-px patches, "
            f"{len(table)} with tissue)\nPredictions from a biased rule (tissue size + label "
            f"+ noise), not a trained model: WGA {100 * ev.wga:.1f}%, BCA {100 * ev.bca:.1f}%"
        ),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
