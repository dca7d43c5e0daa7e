# ruff: noqa
import sys, json
from pathlib import Path
import numpy as np

sys.path.insert(0, "/tmp/sc")
from floors import load
from napari_patchwise.analysis.discover import DiscoverSettings, discover_slices

for name in sys.argv[2:]:
    v, labels, preds, prob, pen = load(Path("/tmp/sc") / name)
    f = discover_slices(
        v, labels, preds, settings=DiscoverSettings(n_slices=int(sys.argv[1]), permutations=20)
    )
    ious = []
    for s in f.slices[:3]:
        m = f.assignment == s.id
        ious.append(round(((m & pen).sum() / max((m | pen).sum(), 1)), 2))
    by_in = sorted(f.slices, key=lambda s: -s.score)[:3]
    ious_in = [
        round(
            ((f.assignment == s.id) & pen).sum() / max(((f.assignment == s.id) | pen).sum(), 1), 2
        )
        for s in by_in
    ]
    print(
        json.dumps(
            dict(
                cohort=name,
                slices=sys.argv[1],
                top_held=round(f.slices[0].held_out_score, 4),
                top_in=round(max(s.score for s in f.slices), 4),
                floor=round(f.noise_floor, 4),
                above=[s.above_noise for s in f.slices[:3]],
                iou_top3_held=ious,
                iou_top3_insample=ious_in,
            )
        ),
        flush=True,
    )
