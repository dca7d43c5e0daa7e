# ruff: noqa
import sys, json
from pathlib import Path
import numpy as np

sys.path.insert(0, "/tmp/sc")
from floors import load, conf_perm
from napari_patchwise.analysis.discover import *

k = int(sys.argv[1])
for name in sys.argv[2:]:
    v, labels, preds, prob, pen = load(Path("/tmp/sc") / name)
    s = DiscoverSettings(n_slices=k)
    errors = preds != labels
    z = reduce_features(v, s.n_components, s.seed)
    a, _ = fit_slices(z, labels, errors, s)
    held = held_out_scores(z, labels, errors, a, s)
    rng = np.random.default_rng(7)
    tops = []
    for _ in range(20):
        fake = conf_perm(labels, errors.astype(int), prob, rng).astype(bool)
        fa, _ = fit_slices(z, labels, fake, s)
        tops.append(held_out_scores(z, labels, fake, fa, s).max())
    fl = np.percentile(tops, 95)
    top = int(np.argmax(held))
    m = a == top
    print(
        json.dumps(
            dict(
                cohort=name,
                k=k,
                top_held=round(held.max(), 4),
                conf_floor=round(fl, 4),
                above=bool(held.max() > fl),
                top_iou=round(float((m & pen).sum() / max((m | pen).sum(), 1)), 2),
            )
        ),
        flush=True,
    )
