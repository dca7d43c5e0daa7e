# ruff: noqa
import sys, json, argparse
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.mixture import GaussianMixture
from napari_patchwise.analysis.discover import (
    DiscoverSettings,
    reduce_features,
    fit_slices,
    slice_scores,
    permuted_errors,
)
from napari_patchwise.cli.discover import joined_inputs


def load(folder):
    a = argparse.Namespace(
        table=str(folder / "erm/predictions.parquet"),
        features=str(folder / "features.zarr"),
        split=None,
        threshold=0.5,
    )
    j, v = joined_inputs(a)
    arts = list(folder.glob("*.artefacts.parquet"))
    if arts:
        t = pd.concat(pd.read_parquet(p) for p in arts)
        t = t[t.artefact == "pen"][["slide", "row", "col", "present"]]
        t["slide"] = t["slide"].astype(str)
        j = j.merge(t, on=["slide", "row", "col"], how="left")
        pen = j["present"].fillna(False).to_numpy(bool)
    else:
        pen = np.zeros(len(j), bool)
    return (
        v,
        j["label"].to_numpy().astype(int),
        j["pred"].to_numpy().astype(int),
        j["prob"].to_numpy(),
        pen,
    )


def gmm_fit(z, labels, errors, s):
    lam = s.weight
    x = np.column_stack([z, lam * labels, lam * errors])
    return GaussianMixture(
        n_components=min(s.n_slices, len(z)),
        covariance_type="diag",
        reg_covar=s.reg_covar,
        random_state=s.seed,
    ).fit(x)


def assign(g, z):
    d = z.shape[1]
    mean, var = g.means_[:, :d], g.covariances_[:, :d]
    lp = (
        -0.5
        * (
            np.sum(np.log(2 * np.pi * var), 1)[None]
            + (((z[:, None] - mean[None]) ** 2) / var[None]).sum(2)
        )
        + np.log(np.maximum(g.weights_, 1e-300))[None]
    )
    return lp.argmax(1)


def crossfit_top(z, labels, errors, s, rng):
    """fit on one half, assign + score held-out half; top slice's held-out score (mean of both folds)."""
    fold = np.zeros(len(z), int)
    for y in np.unique(labels):
        idx = np.flatnonzero(labels == y)
        fold[rng.permutation(idx)[: len(idx) // 2]] = 1
    tops = []
    for f in (0, 1):
        tr, te = fold == f, fold != f
        g = gmm_fit(z[tr], labels[tr], errors[tr], s)
        k = g.n_components
        # rank slices on the fitting half, take its top slice, score it on the held-out half
        sc_tr = slice_scores(assign(g, z[tr]), errors[tr], k)
        sc_te = slice_scores(assign(g, z[te]), errors[te], k)
        tops.append(sc_te[np.argmax(sc_tr)])
    return float(np.mean(tops))


def conf_perm(labels, errors, prob, rng, bins=5):
    conf = np.abs(prob - 0.5)
    out = errors.copy()
    for y in np.unique(labels):
        idx = np.flatnonzero(labels == y)
        q = np.quantile(conf[idx], np.linspace(0, 1, bins + 1)[1:-1])
        b = np.digitize(conf[idx], q)
        for v in np.unique(b):
            ii = idx[b == v]
            out[ii] = errors[rng.permutation(ii)]
    return out


def run(folder, n_slices, perms=20):
    s = DiscoverSettings(n_slices=n_slices)
    v, labels, preds, prob, pen = load(folder)
    errors = (preds != labels).astype(int)
    z = reduce_features(v, s.n_components, s.seed)
    a, _ = fit_slices(z, labels, errors.astype(bool), s)
    k = min(s.n_slices, len(z))
    sc = slice_scores(a, errors, k)
    order = np.argsort(-sc)
    ious = [((a == i) & pen).sum() / max(((a == i) | pen).sum(), 1) for i in order[:3]]
    rng = np.random.default_rng(7)
    A = [
        slice_scores(
            fit_slices(z, labels, (f := permuted_errors(labels, errors, rng)).astype(bool), s)[0],
            f,
            k,
        ).max()
        for _ in range(perms)
    ]
    B = [
        slice_scores(
            fit_slices(z, labels, (f := conf_perm(labels, errors, prob, rng)).astype(bool), s)[0],
            f,
            k,
        ).max()
        for _ in range(perms)
    ]
    E = [
        slice_scores(
            fit_slices(
                z,
                labels,
                (
                    f := (rng.random(len(z)) < np.where(labels == 1, 1 - prob, prob)).astype(int)
                ).astype(bool),
                s,
            )[0],
            f,
            k,
        ).max()
        for _ in range(perms)
    ]
    cf = np.mean(
        [crossfit_top(z, labels, errors, s, np.random.default_rng([1, r])) for r in range(3)]
    )
    CF = [
        crossfit_top(
            z, labels, permuted_errors(labels, errors, rng), s, np.random.default_rng([2, r])
        )
        for r in range(perms)
    ]
    p95 = lambda x: float(np.percentile(x, 95))
    return dict(
        cohort=folder.name,
        slices=n_slices,
        n=len(z),
        acc=round(1 - errors.mean(), 3),
        pen=int(pen.sum()),
        top=round(sc.max(), 4),
        iou_top3=[round(x, 2) for x in ious],
        A_class=round(p95(A), 4),
        B_conf=round(p95(B), 4),
        E_prob=round(p95(E), 4),
        crossfit=round(cf, 4),
        CF_floor=round(p95(CF), 4),
    )


if __name__ == "__main__":
    for name in sys.argv[2:]:
        print(json.dumps(run(Path("/tmp/sc") / name, int(sys.argv[1]))), flush=True)
