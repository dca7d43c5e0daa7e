"""A tiny cohort of hand-built slides for the training tests (written with tifffile).

Each slide is a grid of ``patch`` px cells; every cell is background, healthy tissue or
tumor, covering either a small or a large part of the cell. Tumor pixels are bright in
channel 0, healthy pixels in channel 1, so the label is learnable from the pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def write_slide(folder: Path, name: str, *, cells: int, patch: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    size = cells * patch
    image = np.zeros((2, size, size), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    for r in range(cells):
        for c in range(cells):
            kind = rng.integers(0, 3)  # 0 background, 1 healthy, 2 tumor
            if kind == 0:
                continue
            extent = patch if rng.random() < 0.5 else max(1, patch // 4)  # large / small tissue
            ys, xs = r * patch, c * patch
            mask[ys : ys + extent, xs : xs + extent] = kind
            channel = 0 if kind == 2 else 1
            image[channel, ys : ys + extent, xs : xs + extent] = rng.integers(
                150, 255, (extent, extent)
            )
    image_path, mask_path = folder / f"{name}.ome.tif", folder / f"{name}_mask.tif"
    tifffile.imwrite(image_path, image, metadata={"axes": "CYX"}, ome=True)
    tifffile.imwrite(mask_path, mask)
    return image_path, mask_path


def make_cohort(
    folder: Path, *, splits=("train", "train", "val", "test"), cells: int = 8, patch: int = 16
) -> Path:
    """Write the slides and a manifest (relative paths); return the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split"]
    for i, split in enumerate(splits):
        image, mask = write_slide(folder, f"s{i}", cells=cells, patch=patch, seed=100 + i)
        lines.append(f"{image.name},{mask.name},{split}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
