"""The demo's story, headless: a planted-bias cohort, ERM and GERNE trained on it, both
runs' predictions on a test slide (``patchwise demo``).

:func:`run_story` writes into one folder, reusing whatever an earlier call finished:

* ``cohort/`` — six synthetic CARS/TPEF/SHG slides with tumor masks (three train, one
  val, two test) in which large dense tissue goes with tumor (``spurious`` 0.7, the
  strength at which ERM lands in the paper's regime, ``docs/benchmarks.md``), and
  ``cohort.csv``;
* ``runs/erm`` and ``runs/gerne`` — the ``cpu-quick`` recipe (small CNN, 32 px patches,
  200 steps) at tau = 0.1, on 2 torch threads whatever the machine (the thread count
  changes the numbers, :attr:`StorySettings.threads`). GERNE draws two batches of 32 per step at its group-balanced
  point (c = 0.5, beta = 1); ERM draws one batch of 64, so both see the same number of
  patches (the planted-bias benchmark's rule);
* ``predictions/erm.parquet`` and ``predictions/gerne.parquet`` — the first test slide's
  patch table with each run's ``prob`` and ``pred`` (``patchwise predict``).

A run is reused when its folder holds a finished run with the same settings; a
prediction table when it is newer than its run's ``best.pt``. Everything is written
atomically, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic import atomic_path
from .._progress import ProgressCallback
from ..groups import DEFAULT_TAU
from ..io.tables import write_table
from ..synthetic.slides import SynthConfig, write_synthetic_slide
from .config import TrainConfig
from .loop import TrainCallbacks, train
from .predict import predict_slide
from .runs import BEST, config_changes, read_run_config
from .sweep import clear_run, run_is_finished

#: split -> synthesis seeds of its slides (one slide per seed)
LAYOUT: dict[str, tuple[int, ...]] = {"train": (11, 12, 13), "val": (21,), "test": (31, 32)}
RUN_NAMES = ("erm", "gerne")


@dataclass(frozen=True)
class StorySettings:
    """What the demo synthesises and trains (the defaults are ``patchwise demo``'s)."""

    size: int = 2048
    spurious: float = 0.7
    tau: float = DEFAULT_TAU
    seed: int = 0
    steps: int = 200
    eval_every: int = 40
    #: torch threads of both runs. Fixed, because the thread count changes the numbers:
    #: CPU kernels split their sums by thread, so 1 and 2 threads round differently and
    #: 200 SGD steps carry that apart (GERNE's test WGA 83.9 % at 2 threads; after 40
    #: steps 38.8 % at 2, 50.7 % at 1). With it fixed, every machine with the same torch
    #: build and CPU instruction set trains the same runs (tests/training/test_demo_determinism.py).
    threads: int = 2


@dataclass
class Story:
    """Where :func:`run_story` put everything."""

    folder: Path
    manifest: Path
    test_image: Path
    test_mask: Path
    runs: dict[str, Path] = field(default_factory=dict)
    predictions: dict[str, Path] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


#: ``report(stage, done, total)``: stage is "slides", "patches", "train erm", ... .
StageProgress = Callable[[str, int, int], None]


def run_story(
    folder: str | os.PathLike,
    settings: StorySettings | None = None,
    *,
    progress: StageProgress | None = None,
    log: Callable[[str], None] = print,
) -> Story:
    """Synthesise the cohort, train ERM and GERNE, predict the first test slide.

    Parameters
    ----------
    folder : path-like
        The demo's folder (created if missing); finished parts in it are reused.
    settings : StorySettings, optional
        Sizes, strength, tau, seed and steps.
    progress : callable, optional
        ``progress(stage, done, total)`` for each stage's progress bar.
    log : callable
        Where one line per finished stage goes.

    Returns
    -------
    Story
    """
    settings = settings or StorySettings()
    folder = Path(folder)
    report = progress or _no_progress
    manifest = write_cohort(folder / "cohort", settings, lambda d, t: report("slides", d, t))
    test_name = f"test{LAYOUT['test'][0]}"
    story = Story(
        folder=folder,
        manifest=manifest,
        test_image=manifest.parent / f"{test_name}.ome.tif",
        test_mask=manifest.parent / f"{test_name}_mask.tif",
    )
    for name in RUN_NAMES:
        config = run_config(name, manifest, folder / "runs" / name, settings)
        story.runs[name], reused = train_or_reuse(config, report, name)
        log(f"{name}: {'reused' if reused else 'trained'} {story.runs[name]}")
        if reused:
            story.reused.append(name)
    for name, run in story.runs.items():
        out = folder / "predictions" / f"{name}.parquet"
        story.predictions[name] = predict_or_reuse(
            story, run, out, lambda d, t, n=name: report(f"predict {n}", d, t)
        )
    return story


def _no_progress(stage: str, done: int, total: int) -> None:  # noqa: ARG001
    return None


def write_cohort(folder: Path, settings: StorySettings, progress: ProgressCallback) -> Path:
    """Write the cohort's slides (skipping existing ones) and its ``cohort.csv``."""

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split"]
    slides = [(split, seed) for split, seeds in LAYOUT.items() for seed in seeds]
    for done, (split, seed) in enumerate(slides):
        image = folder / f"{split}{seed}.ome.tif"
        mask = folder / f"{split}{seed}_mask.tif"
        if not (image.exists() and mask.exists()):
            config = SynthConfig(
                size=(settings.size, settings.size),
                seed=seed + 1000 * settings.seed,
                spurious=settings.spurious,
            )
            write_synthetic_slide(image, mask, config)
        lines.append(f"{image.name},{mask.name},{split}")
        progress(done + 1, len(slides))
    manifest = folder / "cohort.csv"
    text = "\n".join(lines) + "\n"
    if not manifest.is_file() or manifest.read_text() != text:
        with atomic_path(manifest) as tmp:
            tmp.write_text(text)
    return manifest


def run_config(name: str, manifest: Path, out: Path, settings: StorySettings):
    """The :class:`~.train_config.TrainConfig` of the demo's ``erm`` or ``gerne`` run."""

    options = {
        "manifest": str(manifest),
        "out": str(out),
        "preset": "cpu-quick",
        "tau": settings.tau,
        "seed": settings.seed,
        "steps": settings.steps,
        "eval_every": settings.eval_every,
        "num_threads": settings.threads,  # not the machine's core count: same numbers
    }
    if name == "erm":
        # one batch of 64: as many patches per step as GERNE's two batches of 32
        options.update(method="erm", batch_size=64)
    else:
        options.update(method="gerne", batch_size=32, c=0.5, beta=1.0)
    return TrainConfig.from_options(options)


def train_or_reuse(config, report: StageProgress, name: str) -> tuple[Path, bool]:
    """Train ``config`` unless its folder holds that run finished; ``(folder, reused)``."""

    out = Path(config.out)
    if run_is_finished(config) and not config_changes(read_run_config(out), config):
        return out, True
    if out.is_dir():
        clear_run(out)  # unfinished, or trained with other settings: the demo's own folder

    class Callbacks(TrainCallbacks):
        def on_prepare(self, done: int, total: int) -> None:
            report("patches", done, total)

        def on_step(self, step: int, total: int, loss: float) -> None:  # noqa: ARG002
            report(f"train {name}", step, total)

    config.validate()
    return Path(train(config, Callbacks())), False


def predict_or_reuse(story: Story, run: Path, out: Path, progress: ProgressCallback) -> Path:
    """``out``: the test slide's table with the run's predictions (reused if current)."""

    if out.is_file() and out.stat().st_mtime >= (run / BEST).stat().st_mtime:
        return out
    table = predict_slide(story.test_image, run, mask=story.test_mask, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_table(table, out)  # atomic
