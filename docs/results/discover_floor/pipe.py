# ruff: noqa
import sys, time
from pathlib import Path
from napari_patchwise.cli.main import main

PATCH, SIZE = 32, 384
LAYOUT = {"train": [1, 2], "val": [3], "test": [4, 5]}
COHORTS = {
    "none": {},
    "rev": {"train": "pen=0.9", "val": "pen=0.9", "test": "pen=-0.9"},
    "zero": {"train": "pen=0.9", "val": "pen=0", "test": "pen=0"},
}


def cli(*a):
    assert main([str(x) for x in a]) == 0, a


name, seed = sys.argv[1], int(sys.argv[2])
folder = Path(f"/tmp/sc/{name}{seed}")
folder.mkdir(parents=True, exist_ok=True)
t0 = time.time()
lines = ["image,mask,split"]
for split, seeds in LAYOUT.items():
    for s in seeds:
        s2 = s + 100 * seed
        art = COHORTS[name].get(split)
        extra = ["--artefact", art, "--artefact-patch-size", PATCH] if art else []
        slide = folder / f"s{s2}.ome.tif"
        cli(
            "synth",
            "--size",
            SIZE,
            SIZE,
            "--out",
            slide,
            "--seed",
            s2,
            "--spurious",
            "0",
            *extra,
            "--quiet",
        )
        lines.append(f"{slide.name},s{s2}_mask.tif,{split}")
(folder / "cohort.csv").write_text("\n".join(lines) + "\n")
cli(
    "train",
    folder / "cohort.csv",
    "--model",
    "smallcnn",
    "--patch-size",
    PATCH,
    "--batch-size",
    32,
    "--steps",
    30,
    "--eval-every",
    30,
    "--seed",
    seed,
    "--num-threads",
    1,
    "--quiet",
    "--out",
    folder / "erm",
)
cli(
    "embed",
    folder / "cohort.csv",
    "--checkpoint",
    folder / "erm",
    "--out",
    folder / "features.zarr",
    "--quiet",
)
print(name, seed, "done", time.time() - t0)
