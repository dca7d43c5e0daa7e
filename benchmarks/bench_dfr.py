"""DFR's variants on planted synthetic features: what fitting on validation labels buys.

Synthetic feature vectors (no network, no slides): ``y`` and a spurious binary attribute
``a`` that agrees with ``y`` in ``--bias`` of the training and validation patches and in
half of the test patches; the features hold a weak direction for ``y`` and a strong one
for ``a``, plus Gaussian noise. Groups ``2 * y + a`` as everywhere in ``patchwise``.
Per seed, test worst-group accuracy (WGA) of:

* **ERM head**: an L2 logistic regression on all training vectors (the baseline);
* **DFR (val labels)**: :func:`napari_patchwise.training.methods.dfr.fit_dfr` with ``fit_on="val"``;
* **DFR (train)**: the same with ``fit_on="train"`` (no validation label);
* **DFR (val labels), float16**: the vectors rounded to float16 first, as a feature store
  holds them.

Mean ± std over seeds and each variant's fitting time (this machine, one thread).

Part ``checkpoint`` (``benchmarks/planted_bias.py``'s slides, ``--spurious 0.7``, tau 0.1,
smallcnn, 200 steps, 3 seeds): the features of the same ERM run embedded twice — from
``best.pt`` (selected on validation WGA, the usual store) and from ``last.pt`` (no
validation label involved, the reference's setting) — and ``dfr`` and ``dfr-train``
heads trained on each; test WGA.

    .venv/bin/python benchmarks/bench_dfr.py [--quick] [--seeds N]
        [--parts synthetic checkpoint] [--out DIR]

``--quick``: 2 seeds and a quarter of the patches; part ``checkpoint`` on the quick
slides (1024 px, ``--spurious 1``), one seed, 20 steps. ``--seeds N``: N seeds in either
part.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np

DIM = 64


def planted_split(rng, n: int, bias: float, core: float, spurious: float, directions):
    """``n`` vectors; ``a == y`` with probability ``bias``."""
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < bias, y, 1 - y)
    core_dir, spur_dir = directions
    x = rng.normal(size=(n, DIM)) + np.outer(y, core_dir) * core + np.outer(a, spur_dir) * spurious
    return x.astype(np.float32), y, 2 * y + a


def wga(prob: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    right = (prob >= 0.5) == (y == 1)
    return float(min(right[groups == g].mean() for g in range(4) if (groups == g).any()))


def one_seed(seed: int, n_train: int, n_val: int, bias: float) -> dict[str, tuple[float, float]]:
    """Test WGA and fitting seconds of each variant for one seed."""
    from sklearn.linear_model import LogisticRegression

    from napari_patchwise.training.methods.dfr import Split, fit_dfr

    rng = np.random.default_rng(seed)
    directions = [v / np.linalg.norm(v) for v in rng.normal(size=(2, DIM))]
    train = Split(*planted_split(rng, n_train, bias, 1.0, 2.5, directions))
    val = Split(*planted_split(rng, n_val, bias, 1.0, 2.5, directions))
    test = Split(*planted_split(rng, n_val, 0.5, 1.0, 2.5, directions))
    splits = {"train": train, "val": val}

    def evaluate(split, rows, prob):
        s = splits[split]
        return SimpleNamespace(wga=wga(prob, s.y[rows], s.groups[rows]), bca=np.nan)

    def head_wga(head, x):
        logits = x.astype(np.float64) @ head.weight.T.astype(np.float64) + head.bias
        return wga(1 / (1 + np.exp(logits[:, 0] - logits[:, 1])), test.y, test.groups)

    out = {}
    t0 = time.perf_counter()
    erm = LogisticRegression(max_iter=2000).fit(train.x, train.y)
    out["ERM head"] = (
        wga(erm.predict_proba(test.x)[:, 1], test.y, test.groups),
        time.perf_counter() - t0,
    )
    for name, fit_on, cast in (
        ("DFR (val labels)", "val", np.float32),
        ("DFR (train)", "train", np.float32),
        ("DFR (val labels), float16", "val", np.float16),
    ):
        tr = Split(train.x.astype(cast), train.y, train.groups)
        va = Split(val.x.astype(cast), val.y, val.groups)
        splits.update(train=tr, val=va)
        t0 = time.perf_counter()
        result = fit_dfr(tr, va, evaluate, fit_on=fit_on, select=("val_wga",), seed=seed)
        seconds = time.perf_counter() - t0
        out[name] = (head_wga(result.heads["val_wga"], test.x.astype(cast)), seconds)
    return out


def checkpoint_part(args, out: Path) -> None:
    """DFR heads on features embedded from best.pt and from last.pt of the same ERM run."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from napari_patchwise.training.embed import EmbedSource, embed
    from napari_patchwise.training.loop import TrainConfig, train
    from planted_bias import QUICK_SLIDES, make_slides, run_one

    size, steps, seeds = (1024, 20, [0]) if args.quick else (2048, 200, [0, 1, 2])
    seeds = list(range(args.seeds)) if args.seeds else seeds
    slides = QUICK_SLIDES if args.quick else out / "slides"
    manifest = make_slides(slides, size=size, spurious=1.0 if args.quick else 0.7)
    results: dict[str, list[float]] = {}
    for seed in seeds:
        common = dict(manifest=str(manifest), model="smallcnn", patch_size=32, steps=steps,
                      eval_every=max(1, steps // 8), lr=0.01, weight_decay=1e-4,
                      num_threads=1, eval_batch_size=128, tau=0.1, seed=seed)  # fmt: skip
        erm = run_one(dict(common, method="erm", batch_size=64, out=str(out / f"erm_{seed}")))
        for source in ("best.pt", "last.pt"):
            store = out / f"features_{seed}_{source[:-3]}.zarr"
            if not store.exists():
                embed(manifest, store, EmbedSource(checkpoint=str(Path(erm) / source)),
                      device="cpu")  # fmt: skip
            for method in ("dfr", "dfr-train"):
                head = out / f"{method}_{seed}_{source[:-3]}"
                if not (head / "metrics.json").exists():
                    options = dict(common, method=method, features=str(store), out=str(head))
                    train(TrainConfig.from_options(options))
                test = json.loads((head / "metrics.json").read_text())["test"]
                results.setdefault(f"{method} on {source} features", []).append(100 * test["wga"])
    print(f"\ncheckpoint part: test WGA (%), {len(seeds)} seed(s), {steps} ERM steps")
    for name, w in results.items():
        spread = np.std(w, ddof=1) if len(w) > 1 else 0.0
        print(f"{name:<32}{np.mean(w):>10.2f} ± {spread:5.2f}   {[round(x, 2) for x in w]}")


def main(argv=None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--bias", type=float, default=0.95)
    parser.add_argument(
        "--parts", nargs="+", choices=("synthetic", "checkpoint"),
        default=["synthetic", "checkpoint"],
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="keep the runs here (reused on a rerun)")
    args = parser.parse_args(argv)
    if "synthetic" in args.parts:
        synthetic_part(args)
    if "checkpoint" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint_part(args, Path(args.out) if args.out else Path(tmp))
    return 0


def synthetic_part(args) -> None:
    """The synthetic-vector comparison (module notes)."""
    seeds = args.seeds or (2 if args.quick else 5)
    n_train, n_val = (5000, 1000) if args.quick else (20000, 4000)
    rows = [one_seed(s, n_train, n_val, args.bias) for s in range(seeds)]
    print(f"test WGA (%), {seeds} seeds, {n_train} training / {n_val} validation vectors, "
          f"bias {args.bias}, {DIM} dims")  # fmt: skip
    print(f"{'variant':<28}{'test WGA':>18}{'fit s':>8}")
    for name in rows[0]:
        w = np.array([r[name][0] for r in rows]) * 100
        t = np.mean([r[name][1] for r in rows])
        print(f"{name:<28}{w.mean():>10.2f} ± {w.std(ddof=1) if len(w) > 1 else 0:5.2f}{t:>8.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
