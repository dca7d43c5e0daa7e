"""File > Open Sample: a synthetic CARS/TPEF/SHG slide with its tumor mask.

The slide is written once into a cache folder (pyramidal OME-TIFF + mask) and opened
through the plugin's own reader, so the sample looks exactly like a user's slide: one
additive image layer per channel from the pyramid, and the mask as Labels.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...synthetic.slides import SynthConfig

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
    from ...synthetic.slides import write_synthetic_slide

    image, mask = sample_paths(folder, config)
    if not (image.is_file() and mask.is_file()):
        write_synthetic_slide(image, mask, config, progress=progress)
    return image, mask


def make_sample_slide() -> list:
    """npe2 sample-data command: layer data of the cached synthetic slide and mask.

    The first call writes the sample (seconds); napari calls sample commands on the Qt
    main thread, so the writing runs as a :class:`.jobs.BackgroundJob` while the event
    loop keeps turning (the viewer repaints, the progress bar moves). A failed write is
    one notification and no layers, as for a file the reader cannot open.
    """
    from ...io import open_slide
    from .layers import NO_LAYERS, size_dask_cache, slide_layers

    size_dask_cache()
    image, mask = sample_paths(config=SAMPLE_CONFIG)
    if not (image.is_file() and mask.is_file()) and not _write_sample(SAMPLE_CONFIG):
        return NO_LAYERS
    return slide_layers(open_slide(image, mask=mask))


def _write_sample(config: SynthConfig) -> bool:
    """Write the sample, keeping Qt responsive; False (after a notification) if it failed."""
    from qtpy.QtWidgets import QApplication

    from ..jobs.progress import NapariProgress

    description = "Writing the synthetic sample slide (once)"
    if QApplication.instance() is None:  # headless use: nothing to keep alive
        with NapariProgress(description) as progress:
            ensure_sample_slide(config=config, progress=progress)
        return True
    from ..jobs.job import BackgroundJob

    def write(*, cancel, progress) -> None:  # noqa: ARG001 - the job protocol
        ensure_sample_slide(config=config, progress=progress)

    written: list = []
    job = BackgroundJob("Patchwise: writing the sample slide cancelled")
    job.start(write, returned=written.append, description=description)
    job.wait()
    return bool(written)
