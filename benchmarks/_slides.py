"""Synthetic scanner slides for the benchmarks: an Aperio SVS of real-looking tissue.

The tissue is scikit-image's immunohistochemistry sample mirrored into a seamless 1024 px
block and repeated, so every level is exact (level k = the block subsampled by 4**k,
repeated) and the file is written tile by tile in bounded memory, whatever its size.
Used by ``bench_open.py`` (SVS vs OpenSlide/tiffslide) and ``bench_wsi_throughput.py``
(stats and predict against the decode floor).
"""

from __future__ import annotations

from pathlib import Path


def ihc_block():
    """The seamless 1024 x 1024 x 3 uint8 block of brightfield tissue."""
    import numpy as np
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()
    block = np.concatenate([ihc, ihc[::-1]], axis=0)
    return np.concatenate([block, block[:, ::-1]], axis=1)


def write_periodic_svs(path: Path, size: int, tile: int = 256, quality: int = 80) -> None:
    """Write a ``size`` x ``size`` Aperio SVS: ``tile`` px JPEG tiles, levels 1, 4, 16, ...
    down to <= 1024 px, and the stripped thumbnail page real Aperio files have."""
    import numpy as np
    import tifffile

    block = ihc_block()
    desc = (
        f"Aperio Image Library v12.0.15\n{size}x{size} [0,0 {size}x{size}] ({tile}x{tile}) "
        f"JPEG/RGB Q={quality}|AppMag = 40|MPP = 0.25"
    )
    options = dict(
        photometric="rgb", compression="jpeg", compressionargs={"level": quality}, metadata=None
    )
    factor = 1
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        while True:
            side = size // factor
            small = np.ascontiguousarray(block[::factor, ::factor])

            def tiles(side=side, small=small):
                # a few periods: any tile-sized window of the plane starts in the first
                reps = -(-(small.shape[0] + tile) // small.shape[0]) + 1
                plane = None
                for y in range(0, side, tile):
                    for x in range(0, side, tile):
                        if plane is None:
                            plane = np.tile(small, (reps, reps, 1))
                        ys, xs = y % small.shape[0], x % small.shape[1]
                        yield plane[ys : ys + tile, xs : xs + tile]

            tw.write(
                tiles(),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                description=desc,
                **options,
            )
            if factor == 1:  # Aperio's second page is a stripped thumbnail
                thumb = np.tile(block[::32, ::32], (-(-size // 1024), -(-size // 1024), 1))
                tw.write(
                    np.ascontiguousarray(thumb[: size // 32, : size // 32]),
                    photometric="rgb",
                    metadata=None,
                    description=desc.split("|")[0] + " -> thumbnail",
                )
            if side <= 1024:
                break
            factor *= 4
