"""File > Open Sample: a synthetic CARS/TPEF/SHG slide with its tumor mask.

The slide is written once into a cache folder (pyramidal OME-TIFF + mask) and opened
through the plugin's own reader, so the sample looks exactly like a user's slide: one
additive image layer per channel from the pyramid, and the mask as Labels.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..synth import SynthConfig

#: Environment variable overriding where sample slides are cached.
SAMPLE_DIR_ENV = "PATCHWISE_SAMPLE_DIR"

#: The sample: big enough to pan and to cut into thousands of patches, small enough to
#: write in seconds.
SAMPLE_CONFIG = SynthConfig(size=(4096, 4096), seed=0, spurious=1.0)

# Bump when the generator changes, so stale cached samples are not reused.
_GENERATOR_VERSION = 1


def sample_cache_dir() -> Path:
    """``$PATCHWISE_SAMPLE_DIR``, else ``$XDG_CACHE_HOME/napari-patchwise/samples``."""
    if os.environ.get(SAMPLE_DIR_ENV):
        return Path(os.environ[SAMPLE_DIR_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-patchwise" / "samples"


def sample_paths(
    folder: str | os.PathLike | None = None, config: SynthConfig = SAMPLE_CONFIG
) -> tuple[Path, Path]:
    """Where the sample slide and its mask live (nothing is written)."""
    folder = Path(folder) if folder is not None else sample_cache_dir()
    h, w = config.size
    stem = f"synthetic-{h}x{w}-seed{config.seed}-s{config.spurious:g}-v{_GENERATOR_VERSION}"
    return folder / f"{stem}.ome.tif", folder / f"{stem}_mask.tif"


def ensure_sample_slide(
    folder: str | os.PathLike | None = None,
    config: SynthConfig = SAMPLE_CONFIG,
    progress=None,
) -> tuple[Path, Path]:
    """The sample slide and mask, written first if they are not cached yet."""
    from ..synth import write_synthetic_slide

    image, mask = sample_paths(folder, config)
    if not (image.is_file() and mask.is_file()):
        write_synthetic_slide(image, mask, config, progress=progress)
    return image, mask


def make_sample_slide() -> list:
    """npe2 sample-data command: layer data of the cached synthetic slide and mask.

    The first call writes the sample (seconds); napari calls sample commands on the Qt
    main thread, so the writing runs in a thread while the event loop keeps turning and
    the progress bar is updated from the main thread.
    """
    from ..io import open_slide
    from .reader import _napari_progress, size_dask_cache, slide_layers

    size_dask_cache()
    image, mask = sample_paths(config=SAMPLE_CONFIG)
    if not (image.is_file() and mask.is_file()):
        with _napari_progress("Writing the synthetic sample slide (once)") as progress:
            _run_keeping_qt_alive(
                lambda report: ensure_sample_slide(config=SAMPLE_CONFIG, progress=report),
                progress,
            )
    return slide_layers(open_slide(image, mask=mask))


def _run_keeping_qt_alive(job, progress):
    """Run ``job(report)`` in a thread; meanwhile process Qt events and show progress.

    Without a Qt application (headless use) the job simply runs here.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    from qtpy.QtCore import QEventLoop
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return job(progress)
    latest: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(job, lambda done, total: latest.append((done, total)))
        while not future.done():
            if latest:
                progress(*latest[-1])  # widgets are touched on the main thread only
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.02)
        return future.result()
