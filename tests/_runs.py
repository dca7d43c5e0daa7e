"""A hand-written finished run directory (what `patchwise train` leaves), for report tests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

GROUPS = ("non-tumor/small", "non-tumor/large", "tumor/small", "tumor/large")


def make_run(folder: Path, *, seed: int = 0) -> Path:
    """Write config.json, metrics.json, history.csv, predictions.parquet and a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps({"method": "erm", "tau": 0.1, "seed": seed, "threshold": 0.5})
    )
    test = {
        "wga": 0.5,
        "bca": 0.75,
        "accuracy": 0.8,
        "groups": {name: {"n": 2, "accuracy": 0.5 + 0.1 * i} for i, name in enumerate(GROUPS)},
    }
    metrics = {
        "selected_by": "val_wga",
        "by_selection": {
            "val_wga": {"step": 4, "test": test},
            "val_bca": {"step": 2, "test": test},
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame(
        {"step": [2, 4], "loss": [0.7, 0.5], "val_wga": [0.4, 0.5], "val_bca": [0.6, 0.7]}
    ).to_csv(folder / "history.csv", index=False)
    pd.DataFrame(
        {
            "label": [0, 0, 1, 1],
            "tumor_ratio": [0.0, 0.0, 0.5, 0.9],
            "tumor_tissue_ratio": [0.0, 0.0, 0.6, 1.0],
            "tissue_ratio": [0.05, 0.8, 0.05, 0.9],
            "prob": [0.2, 0.6, 0.4, 0.9],
        }
    ).to_parquet(folder / "predictions.parquet", index=False)
    (folder / "last.pt").write_bytes(b"checkpoint bytes")
    return folder
