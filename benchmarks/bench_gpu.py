"""GPU speed: ResNet-50 training and prediction against the in-memory floor (needs CUDA).

On one CUDA device, with the settings ``patchwise train`` uses there (automatic mixed
precision: bf16 where supported, else fp16 with a grad scaler; channels-last), at batch
sizes 32 and 128, patches per second of

* the training loop — ``train.train`` on a synthetic cohort (``patchwise synth`` slides),
  ERM, with 0 and 4 loader workers; timed between its step callbacks after ``--warmup``
  steps, so start-up, cache preparation, validation and the test are not in it;
* its floor — ResNet-50's forward + backward + SGD step under the same autocast on one
  batch already on the GPU;
* prediction — ``predict.predict_table`` over a synthetic slide's whole patch grid (patches
  read from the tiled OME-TIFF, normalised, classified), second pass timed;
* its floor — the forward pass alone (no grad, same autocast) on a batch on the GPU;
* ``patchwise embed`` with a random ViT-L/16 against its forward pass (bench_embed.py).

    .venv/bin/python benchmarks/bench_gpu.py [--patch 64] [--steps 200] [--batches 32 128]

``--quick``: 1024 px training slides, a 2048 px slide to predict, 30 steps, 0 workers only.
Without a CUDA device it says so and exits 0 (``make bench`` runs it everywhere).
``--device cpu`` runs the same code on the CPU, to check the script without a GPU (its
figures mean nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUICK = {"size": 1024, "predict_size": 2048, "steps": 30, "warmup": 5, "workers": [0]}
FULL = {"size": 2048, "predict_size": 4096, "steps": 200, "warmup": 20, "workers": [0, 4]}


def device_or_exit(name: str):
    """The CUDA device (or the CPU when asked), or a one-line message and exit 0."""
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print(
            f"bench_gpu: skipped: no CUDA device (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); run it on a machine with an NVIDIA GPU"
        )
        sys.exit(0)
    return torch.device("cuda", 0)


def make_slides(folder: Path, size: int, predict_size: int) -> tuple[Path, Path]:
    """A train/val/test cohort of synthetic slides and one larger slide to predict."""
    from napari_patchwise.synthetic.slides import SynthConfig, write_synthetic_slide

    lines = ["image,mask,split"]
    for name, seed in (("train1", 11), ("train2", 12), ("val", 21), ("test", 31)):
        image, mask = folder / f"{name}.ome.tif", folder / f"{name}_mask.tif"
        write_synthetic_slide(image, mask, SynthConfig(size=(size, size), seed=seed))
        lines.append(f"{image.name},{mask.name},{name.rstrip('12')}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    big = folder / "predict.ome.tif"
    write_synthetic_slide(big, folder / "predict_mask.tif", SynthConfig(size=(predict_size,) * 2))
    return manifest, big


class StepTimes:
    """Training callbacks keeping the time of every step (each one ends synchronised:
    the loop reads the loss as a float)."""

    def __init__(self):
        from napari_patchwise.training.loop import TrainCallbacks

        times = self.times = []

        class Callbacks(TrainCallbacks):
            def on_step(self, step, total, loss):
                times.append(time.perf_counter())

        self.callbacks = Callbacks()

    def patches_per_s(self, warmup: int, batch: int) -> float:
        t = self.times[warmup:]
        return (len(t) - 1) * batch / (t[-1] - t[0])


def train_rate(manifest: Path, out: Path, args, batch: int, workers: int) -> float:
    """Patches/s of the training loop after the warm-up steps."""
    from napari_patchwise.training.loop import TrainConfig, train

    config = TrainConfig.from_options(
        manifest=str(manifest),
        out=str(out),
        model="resnet50",
        device=args.device,
        patch_size=args.patch,
        batch_size=batch,
        steps=args.warmup + args.steps,
        eval_every=args.warmup + args.steps,
        num_workers=workers,
        eval_batch_size=max(256, batch),
    )
    times = StepTimes()
    train(config, times.callbacks)
    return times.patches_per_s(args.warmup, batch)


def floor_rates(device, channels: int, args, batch: int) -> tuple[float, float]:
    """Patches/s of the training step and of the forward pass on a batch on the GPU."""
    import torch

    from napari_patchwise.training.inference import autocast_context
    from napari_patchwise.training.models import build_architecture

    torch.manual_seed(0)
    model = build_architecture("resnet50", channels).to(device)
    model = model.to(memory_format=torch.channels_last)
    autocast, dtype = autocast_context(device, "auto")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, channels, args.patch, args.patch, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)

    def step():
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def forward():
        with torch.no_grad(), autocast():
            model(x)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rates = []
    for fn, mode in ((step, True), (forward, False)):
        model.train(mode)
        for _ in range(args.warmup):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        sync()
        rates.append(args.steps * batch / (time.perf_counter() - t0))
    return rates[0], rates[1]


def predict_rate(slide_path: Path, run: Path, args, batch: int) -> float:
    """Patches/s of ``predict_table`` over the slide's grid (second of two passes)."""
    from napari_patchwise.io import open_slide
    from napari_patchwise.training.predict import geometry_table, predict_table

    slide = open_slide(slide_path, pyramid=False)
    table = geometry_table(slide, args.patch)
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        predict_table(slide, table, run, batch_size=batch, device=args.device)
        seconds.append(time.perf_counter() - t0)
    return len(table) / seconds[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=64, help="patch side (train's default)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (200)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (20)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="(0 4)")
    parser.add_argument("--size", type=int, default=None, help="training slide side (2048)")
    parser.add_argument("--predict-size", type=int, default=None, help="(4096)")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    device = device_or_exit(args.device)
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="no pretrained weights")  # speed only

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (script check)"
    print(f"{name}, torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        manifest, big = make_slides(folder, args.size, args.predict_size)
        print(f"slides written in {time.perf_counter() - t0:.0f} s", flush=True)
        for batch in args.batches:
            floor_train, floor_predict = floor_rates(device, 3, args, batch)
            run = None
            for workers in args.workers:
                run = folder / f"run-{batch}-{workers}"
                rate = train_rate(manifest, run, args, batch, workers)
                rows.append((f"train loop, {workers} workers", batch, rate, floor_train))
            rate = predict_rate(big, run, args, batch)
            rows.append(("predict_table", batch, rate, floor_predict))
    print(
        f"\n{'ResNet-50, ' + str(args.patch) + ' px':28s} {'batch':>5s} {'patches/s':>10s} "
        f"{'floor':>10s} {'ratio':>6s}"
    )
    for name, batch, rate, floor in rows:
        print(f"{name:28s} {batch:5d} {rate:10.0f} {floor:10.0f} {rate / floor:6.2f}")
    ratios = [rate / floor for name, _b, rate, floor in rows if name.startswith("train")]
    print(f"\ntraining loop at {statistics.median(ratios):.2f}x its floor (median over settings)")
    vit_embed_rows(device, args.quick)
    return 0


def vit_embed_rows(device, quick: bool) -> None:
    """``patchwise embed`` with a random ViT-L/16 (64 px patches resized to 224) against its
    forward pass on in-memory patches (benchmarks/bench_embed.py; needs the fm extra)."""
    try:
        import timm  # noqa: F401
    except ImportError:
        print("\nViT-L/16 embed: skipped (pip install napari-patchwise[fm])")
        return
    from bench_embed import main as bench_embed

    print("\nViT-L/16 embed (benchmarks/bench_embed.py):", flush=True)
    models = ["ViT-L/16"] if device.type == "cuda" else ["ViT-S/16"]  # a CPU only checks
    argv = ["--device", device.type, "--models", *models, *(["--quick"] * quick)]
    if device.type != "cuda" and not quick:  # a script check on the CPU publishes nothing
        argv += ["--results", str(Path(tempfile.gettempdir()) / "bench_gpu_embed_check")]
    try:
        bench_embed(argv)  # a full CUDA run: bench_embed publishes embed_cuda.md
    except SystemExit as refused:  # loaded machine or too few repeats: said, not fatal
        print(f"ViT-L/16 embed: not written: {refused}")


if __name__ == "__main__":
    sys.exit(main())
