"""A corpus of damaged files, written small and broken on purpose, one kind per helper.

Each helper writes a file that a demanding user met in the wild: a vendor slide with one
undecodable tile, a cut DICOM instance, a DICOM folder without its full-resolution
level, an OME-Zarr image or a feature store with a missing or truncated chunk, GeoJSON
nested beyond any sane depth or with coordinates beyond float range, a TIFF with a
compression code no codec knows. The damage is made at the byte level after an ordinary
write, so the rest of the file is well-formed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tifffile

from _wsi import brightfield, write_dicom_wsi, write_svs


def slide_rgb(side: int = 256) -> np.ndarray:
    """A brightfield ``(Y, X, 3)`` slide with tissue in the middle (every tile differs)."""
    return brightfield(side, side, seed=3)


def write_mask(path: Path, side: int) -> Path:
    """A label mask (0 background, 1 healthy, 2 tumor) of ``side`` x ``side`` pixels.

    The tumor square is off the 64 px tile grid: a tile the mask calls tumor throughout
    is never decoded (its tissue cannot change a code), so no damaged tile may be.
    """
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
    mask[side // 4 + 8 : side // 2 + 8, side // 4 + 8 : side // 2 + 8] = 2
    tifffile.imwrite(path, mask)
    return path


def _tile_span(path: Path, page: int, tile: int) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        return int(p.dataoffsets[tile]), int(p.databytecounts[tile])


def svs_with_bad_tile(path: Path, *, compression: str, tile_index: int = 5) -> Path:
    """An Aperio SVS whose level-0 tile ``tile_index`` cannot be decoded.

    ``"jpeg"``: the tile's entropy-coded data holds a bogus marker (``FF 99``) and is cut
    short; ``"zlib"``: the tile's deflate stream starts with garbage.
    """
    side = 256
    write_svs(path, slide_rgb(side), tile=64, n_levels=2)
    if compression == "jpeg":
        # Rewrite level 0 with JPEG tiles (the SVS helper writes zlib).
        levels = [slide_rgb(side), slide_rgb(side)[::2, ::2]]
        _rewrite_svs_jpeg(path, levels)
    offset, count = _tile_span(path, 0, tile_index)
    with open(path, "r+b") as fh:
        if compression == "jpeg":
            # Past the headers (SOS is near the start of an abbreviated tile): a
            # marker no JPEG defines, then garbage up to the end of the tile.
            start = offset + count // 3
            fh.seek(start)
            fh.write((b"\xff\x99" + b"\x00\xff" * 8) * ((offset + count - start) // 18))
        else:
            fh.seek(offset)
            fh.write(b"\xff" * min(count, 64))
    return path


def _rewrite_svs_jpeg(path: Path, levels: list[np.ndarray]) -> None:
    from _wsi import APERIO, label_image

    h, w = levels[0].shape[:2]
    meta = "|AppMag = 40|MPP = 0.25"
    base = f"{APERIO}\n{w}x{h} [0,0 {w}x{h}] (64x64) JPEG/RGB Q=70{meta}"
    options = dict(photometric="rgb", metadata=None)
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(64, 64), compression="jpeg", description=base, **options)
        tw.write(levels[-1], description=f"{APERIO}\n{w}x{h} -> thumbnail{meta}", **options)
        for lvl in levels[1:]:
            tw.write(lvl, tile=(64, 64), compression="jpeg", description=base, **options)
        tw.write(label_image(), subfiletype=1, description=f"{APERIO}\nlabel 64x40", **options)


def dicom_folder(folder: Path, side: int = 256) -> list[Path]:
    """A DICOM WSI folder of two levels (and a label); its instances, level 0 first."""
    write_dicom_wsi(folder, slide_rgb(side), tile=64, n_levels=2)
    return dicom_levels(folder)


def dicom_levels(folder: Path) -> list[Path]:
    """The folder's VOLUME instances, largest first."""
    import pydicom

    volumes = []
    for file in sorted(folder.iterdir()):
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        if "VOLUME" in list(ds.ImageType):
            volumes.append((-int(ds.TotalPixelMatrixColumns), file))
    return [file for _, file in sorted(volumes)]


def dicom_cut(folder: Path) -> Path:
    """A DICOM WSI whose level-0 instance is cut to two thirds of its bytes."""
    level0 = dicom_folder(folder)[0]
    data = level0.read_bytes()
    level0.write_bytes(data[: 2 * len(data) // 3])
    return folder


def dicom_without_level0(folder: Path) -> Path:
    """A DICOM WSI folder whose full-resolution instance was not copied."""
    dicom_folder(folder)[0].unlink()
    return folder


def ome_zarr_image(path: Path, side: int = 256, chunk: int = 64) -> Path:
    """An OME-Zarr RGB image (zarr v3, one level) of ``side`` px in ``chunk`` px chunks."""
    import dask.array as da

    from napari_patchwise.io.write import write_ome_zarr

    image = da.from_array(np.moveaxis(slide_rgb(side), -1, 0))
    write_ome_zarr(path, image, pixel_size=0.5, chunk=chunk)
    return path


def chunk_file(store: Path, array: str, coords: tuple[int, ...]) -> Path:
    """The file of chunk ``coords`` of ``array`` in a zarr v3 store (default key encoding)."""
    return store.joinpath(array, "c", *(str(c) for c in coords))


def truncate(file: Path) -> Path:
    """Cut ``file`` to half its bytes (a copy that stopped midway)."""
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    return file


def copy_store(store: Path, out: Path) -> Path:
    shutil.copytree(store, out)
    return out


def deep_geojson(path: Path, depth: int = 100_000) -> Path:
    """A GeoJSON whose coordinates are nested ``depth`` lists deep."""
    path.write_text('{"type": "Polygon", "coordinates": ' + "[" * depth + "]" * depth + "}")
    return path


def huge_coordinates_geojson(path: Path, side: int) -> Path:
    """Tumor annotations: one polygon inside the slide, one reaching beyond 1e19 px."""

    def feature(ring, name):
        return {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"classification": {"name": name}},
        }

    inside = [[0, 0], [side / 2, 0], [side / 2, side / 2], [0, side / 2], [0, 0]]
    huge = [[0, 0], [3e19, 0], [3e19, 3e19], [0, 3e19], [0, 0]]
    collection = {
        "type": "FeatureCollection",
        "features": [feature(inside, "Tumor"), feature(huge, "Tumor")],
    }
    path.write_text(json.dumps(collection))
    return path


def tiff_unknown_compression(path: Path, side: int = 64) -> Path:
    """A tiled TIFF whose Compression tag says 34999 (no codec has that code)."""
    image = np.random.default_rng(2).integers(0, 255, (side, side), dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib")
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(34999)
    return path


def smallcnn_checkpoint(path: Path, channels: int = 3, patch: int = 16) -> Path:
    """A ``best.pt``-style checkpoint of an untrained small CNN (enough for ``predict``)."""
    import torch

    from napari_patchwise.training.models import build_architecture

    torch.manual_seed(0)
    model = build_architecture("smallcnn", channels)
    torch.save(
        {
            "model": model.state_dict(),
            "model_name": "smallcnn",
            "in_channels": channels,
            "mean": [0.5] * channels,
            "std": [0.25] * channels,
            "patch_size": patch,
        },
        path,
    )
    return path
