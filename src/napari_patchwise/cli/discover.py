"""``patchwise discover``: slices of patches, in feature space, where a model errs.

``patchwise discover TABLE --features FEATURES.zarr --out slices.parquet`` joins a
prediction table (``slide, row, col, label, prob``) to a feature store's vectors on
``slide, row, col``, fits the error-aware mixture of :mod:`napari_patchwise.analysis.discover`
and writes one row per patch (its slice and responsibility) and ``slices.json`` beside
it: the ranked slices, their accuracy, the known attributes they correlate with, their
most typical patches, and the permutation noise floor (``docs/shortcuts.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .._atomic import atomic_paths, check_output
from ..errors import PatchwiseError
from ..groups import numeric_attribute_columns
from ..io.feature_store import read_features
from ..io.tables import read_table, table_format
from ..schema import DEFAULT_THRESHOLD
from ._args import non_negative_float, non_negative_int, positive_int, probability, seed

KEYS = ["slide", "row", "col"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "discover",
        help="find slices of patches where a model errs, in feature space (no groups needed)",
        description="Join a prediction table to a feature store (patchwise embed), fit an "
        "error-aware Gaussian mixture on the PCA-reduced features with label and error, "
        "and rank the slices by their excess errors on held-out patches (cross-fitted) "
        "beside a permutation noise floor of the same (docs/shortcuts.md).",
    )
    p.add_argument("table", metavar="TABLE", help="predictions: slide, row, col, label, prob")
    p.add_argument("--features", required=True, metavar="FEATURES.zarr", help="feature store")
    p.add_argument("--out", required=True, metavar="SLICES.parquet", help="per-patch slices")
    p.add_argument(
        "--split", default=None, help="only the rows of TABLE whose split column is this"
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=DEFAULT_THRESHOLD,
        help=f"decision threshold on prob ({DEFAULT_THRESHOLD})",
    )
    p.add_argument("--slices", type=positive_int, default=8, help="mixture components (8)")
    p.add_argument("--components", type=positive_int, default=32, help="PCA components kept (32)")
    p.add_argument(
        "--weight",
        type=non_negative_float,
        default=1.0,
        help="lambda: weight of label and error beside the features (1.0)",
    )
    p.add_argument(
        "--permutations",
        type=non_negative_int,
        default=20,
        help="error permutations for the noise floor, 0 for none (20)",
    )
    p.add_argument("--typical", type=positive_int, default=10, help="typical patches kept (10)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (0)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.discover import DiscoverSettings, discover_slices

    out = Path(args.out)
    if table_format(out) != "parquet":
        raise PatchwiseError("is not a .parquet name", path=out, hint="name it *.parquet")
    summary_path = out.with_suffix(".json")
    for path in (out, summary_path):
        check_output(path, inputs=[args.table, args.features], role="an input")
    settings = DiscoverSettings(
        n_slices=args.slices,
        n_components=args.components,
        weight=args.weight,
        permutations=args.permutations,
        seed=args.seed,
        n_typical=args.typical,
    )
    joined, vectors = joined_inputs(args)
    found = discover_slices(
        vectors,
        joined["label"].to_numpy(),
        joined["pred"].to_numpy(),
        attributes=_attributes(joined),
        settings=settings,
    )
    per_patch = joined[[*KEYS, "label", "pred"]].copy()
    per_patch["slice"] = found.assignment.astype("int64")
    per_patch["responsibility"] = found.responsibility
    summary = found.summary()
    summary.update(table=str(args.table), features=str(args.features), split=args.split)
    for s in summary["slices"]:
        s["typical"] = joined.iloc[s["typical"]][KEYS].to_dict("records")
    with atomic_paths([out, summary_path]) as (tmp, tmp_json):
        per_patch.to_parquet(tmp, index=False)
        tmp_json.write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    _print_summary(found, sys.stderr)
    print(out)
    print(summary_path)
    return 0


def joined_inputs(args: argparse.Namespace):
    """The prediction rows that have a vector, and their vectors, in the same order."""

    table = read_table(args.table, required=(*KEYS, "label", "prob"))
    if args.split is not None:
        if "split" not in table.columns:
            raise PatchwiseError("has no split column", path=args.table, hint="leave out --split")
        table = table[table["split"].astype(str) == args.split]
    table = table.copy()
    table["pred"] = (table["prob"].to_numpy() >= args.threshold).astype(np.int8)
    store = read_features(args.features)
    index = store.table[KEYS].copy()
    index["slide"] = index["slide"].astype(str)
    index["_vector"] = np.arange(len(index))
    table["slide"] = table["slide"].astype(str)
    if table.duplicated(KEYS).any():
        raise PatchwiseError(
            "holds a patch twice (the same slide, row and col)",
            path=args.table,
            hint="give one prediction per patch",
        )
    joined = table.merge(index, on=KEYS, how="inner")
    if len(joined) < 2:
        raise PatchwiseError(
            f"only {len(joined)} of {len(table)} patches have a vector in {args.features}",
            path=args.table,
            hint="embed the slides of this table (same patch grid) with patchwise embed",
        )
    missing = len(table) - len(joined)
    if missing:
        print(f"patchwise discover: {missing} patch(es) without a vector left out", file=sys.stderr)
    vectors = np.asarray(store.vectors[joined["_vector"].to_numpy()], dtype=np.float32)
    return joined.drop(columns="_vector").reset_index(drop=True), vectors


def _attributes(joined):
    columns = [c for c in numeric_attribute_columns(joined) if c not in ("slice",)]
    return joined[columns] if columns else None


def _plain(value):
    """JSON for numpy scalars."""
    return value.item() if hasattr(value, "item") else str(value)


def _print_summary(found, stream) -> None:
    floor = found.noise_floor
    floor_text = (
        "no noise floor (--permutations 0)"
        if floor != floor  # NaN
        else f"noise floor {floor:.4f} (cross-fitted: held-out scores, errors permuted "
        "within each class)"
    )
    print(
        f"patchwise discover: {len(found.assignment)} patches, accuracy "
        f"{found.overall_accuracy:.3f}, {floor_text}",
        file=stream,
    )
    for s in found.slices[:5]:
        mark = " *" if s.above_noise else ""
        attrs = ", ".join(f"{a['column']} {a['correlation']:+.2f}" for a in s.attributes)
        print(
            f"  slice {s.id}: {s.size} patches, accuracy {s.accuracy:.3f}, "
            f"held-out score {s.held_out_score:.4f}{mark} (in-sample {s.score:.4f})"
            + (f" ({attrs})" if attrs else ""),
            file=stream,
        )
