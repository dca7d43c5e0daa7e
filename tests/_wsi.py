"""Small vendor whole-slide files, written to each format's published structure.

* Aperio SVS (tifffile): a tiled RGB baseline whose ImageDescription starts with
  ``Aperio Image Library`` and carries ``|AppMag = 40|MPP = 0.25``, a stripped thumbnail
  as the second page, tiled reduced levels, then the label and macro pages (their
  descriptions name them) — the layout OpenSlide's aperio driver reads.
* Generic tiled TIFF (tifffile): tiled RGB with reduced-resolution pages.
* DICOM WSI (wsidicom): one VL Whole Slide Microscopy instance per level (TILED_FULL,
  uncompressed so pixels compare exactly) plus a label instance, written by
  ``WsiDicom.save`` from an in-memory source.

Every writer returns the levels it wrote, ``(Y, X, 3)`` uint8, level 0 first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

APERIO = "Aperio Image Library v12.0.15"


def brightfield(height: int, width: int, seed: int = 0) -> np.ndarray:
    """White glass with a darker, textured tissue block in the middle (``(Y, X, 3)``)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 255, np.uint8)
    tissue = rng.integers(40, 160, (height // 2, width // 2, 3), dtype=np.uint8)
    image[height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2] = tissue
    return image


def pyramid(level0: np.ndarray, n_levels: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(level0[:: 2**i, :: 2**i]) for i in range(n_levels)]


def label_image() -> np.ndarray:
    label = np.full((40, 64, 3), 230, np.uint8)
    label[10:30, 8:56] = (20, 40, 200)
    return label


def write_svs(
    path: Path,
    level0: np.ndarray,
    *,
    mpp: float = 0.25,
    mag: int = 40,
    tile: int = 128,
    n_levels: int = 3,
) -> list[np.ndarray]:
    """An Aperio SVS (zlib tiles, so pixels are exact) with thumbnail, label and macro."""
    levels = pyramid(level0, n_levels)
    h, w = level0.shape[:2]
    meta = f"|AppMag = {mag}|MPP = {mpp}|ScannerType = GT450"
    base = f"{APERIO}\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) RAW/RGB{meta}"
    options = dict(photometric="rgb", metadata=None)
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(tile, tile), compression="zlib", description=base, **options)
        thumb = levels[-1]
        tw.write(thumb, description=f"{APERIO}\n{w}x{h} -> thumbnail{meta}", **options)
        for lvl in levels[1:]:
            tw.write(lvl, tile=(tile, tile), compression="zlib", description=base, **options)
        tw.write(label_image(), subfiletype=1, description=f"{APERIO}\nlabel 64x40", **options)
        macro = np.full((60, 160, 3), 120, np.uint8)
        tw.write(macro, subfiletype=9, description=f"{APERIO}\nmacro 160x60", **options)
    return levels


def write_jpeg_svs(path: Path, image: np.ndarray, *, tile: int = 256) -> None:
    """A one-level Aperio SVS of ``image`` ``(Y, X, 3)`` with JPEG tiles, as scanners write
    them (lossy: compare against ``tifffile.imread`` of the file, not ``image``)."""
    h, w = image.shape[:2]
    desc = f"{APERIO}\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB|AppMag = 40|MPP = 0.25"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            image,
            tile=(tile, tile),
            photometric="rgb",
            compression="jpeg",
            description=desc,
            metadata=None,
        )


def write_generic_tiff(
    path: Path, level0: np.ndarray, *, tile: int = 128, n_levels: int = 3
) -> list[np.ndarray]:
    """A plain tiled pyramidal RGB TIFF (reduced levels as later pages), 1 µm pixels."""
    levels = pyramid(level0, n_levels)
    with tifffile.TiffWriter(path) as tw:
        for i, lvl in enumerate(levels):
            tw.write(
                lvl,
                tile=(tile, tile),
                photometric="rgb",
                compression="zlib",
                subfiletype=1 if i else 0,
                resolution=(1e4 / 2**i, 1e4 / 2**i),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    return levels


def write_dicom_wsi(
    folder: Path, level0: np.ndarray, *, mpp: float = 0.5, tile: int = 128, n_levels: int = 2
) -> list[np.ndarray]:
    """A DICOM WSI folder: one uncompressed TILED_FULL instance per level and a label."""
    from wsidicom import WsiDicom

    levels = pyramid(level0, n_levels)
    with WsiDicom(_array_source(levels, tile, mpp)) as wsi:
        wsi.save(folder)
    return levels


def _array_source(levels, tile, mpp):
    """A wsidicom ``Source`` over in-memory levels (what a converter's tiler would be)."""
    from PIL import Image as Pillow
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from wsidicom.codec import Encoder
    from wsidicom.geometry import Size, SizeMm
    from wsidicom.instance import ImageData, WsiDataset, WsiInstance
    from wsidicom.metadata import Image, Label, Pyramid, Series, Slide, Study, WsiMetadata
    from wsidicom.metadata.image import ImageType
    from wsidicom.metadata.sample import SlideSample
    from wsidicom.metadata.schema.dicom.wsi import WsiMetadataDicomSchema
    from wsidicom.metadata.wsi import Equipment, Patient
    from wsidicom.source import Source

    class ArrayData(ImageData):
        def __init__(self, rgb: np.ndarray, spacing_um: float):
            self._rgb, self._um = rgb, spacing_um
            super().__init__(Encoder.create(ExplicitVRLittleEndian, 8, "RGB"))

        transfer_syntax = property(lambda self: ExplicitVRLittleEndian)
        image_size = property(lambda self: Size(self._rgb.shape[1], self._rgb.shape[0]))
        tile_size = property(lambda self: Size(tile, tile))
        pixel_spacing = property(lambda self: SizeMm(self._um / 1000, self._um / 1000))
        imaged_size = property(lambda self: None)
        samples_per_pixel = property(lambda self: 3)
        photometric_interpretation = property(lambda self: "RGB")
        bits = property(lambda self: 8)
        image_coordinate_system = property(lambda self: None)
        thread_safe = property(lambda self: True)
        lossy_compression = property(lambda self: None)
        transcoder = property(lambda self: None)

        def get_decoded_tile(self, tile_point, z, path, cache=True):
            out = np.zeros((tile, tile, 3), np.uint8)
            y, x = tile_point.y * tile, tile_point.x * tile
            part = self._rgb[y : y + tile, x : x + tile]
            out[: part.shape[0], : part.shape[1]] = part
            return out

        def get_encoded_tile(self, tile_point, z, path):
            return self.encoder.encode(self.get_decoded_tile(tile_point, z, path))

    metadata = WsiMetadata(
        study=Study(uid=generate_uid()),
        series=Series(uid=generate_uid()),
        patient=Patient(),
        equipment=Equipment(),
        slide=Slide(identifier="slide-1", samples=[SlideSample("sample-1", uid=generate_uid())]),
        pyramid=Pyramid(image=Image(), optical_paths=[], uid=generate_uid()),
        label=Label(),
        frame_of_reference_uid=generate_uid(),
        dimension_organization_uids=[generate_uid()],
    )
    schema = WsiMetadataDicomSchema()

    class ArraySource(Source):
        def __init__(self):
            super().__init__()
            self._levels = [
                WsiInstance.create_instance(
                    ArrayData(lvl, mpp * 2**i),
                    schema.dump(metadata, ImageType.VOLUME),  # fresh: it is mutated
                    ImageType.VOLUME,
                    i,
                )
                for i, lvl in enumerate(levels)
            ]
            self._label = WsiInstance.create_label(
                Pillow.fromarray(label_image()), schema.dump(metadata, ImageType.LABEL)
            )

        base_dataset = property(lambda self: WsiDataset(schema.dump(metadata, ImageType.VOLUME)))
        level_instances = property(lambda self: self._levels)
        label_instances = property(lambda self: [self._label])
        overview_instances = property(lambda self: [])
        thumbnail_instances = property(lambda self: [])
        annotation_instances = property(lambda self: [])

        def close(self):
            pass

    return ArraySource()
