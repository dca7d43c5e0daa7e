"""QuPath GeoJSON annotations as masks: pixel-exact rasterisation, the file format, the CLI.

The rule under test: pixel ``(r, c)`` belongs to a polygon when its centre
``(x, y) = (c + 0.5, r + 0.5)`` passes W. R. Franklin's crossing test with half-open
edges (``java.awt.Shape`` insideness, as QuPath fills shapes); holes subtract; classes
overlap as tumor > healthy > background.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.draw import polygon2mask

from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io import open_slide, read_mask
from napari_patchwise.io.annotations import (
    AnnotationRaster,
    EdgeIndex,
    Feature,
    lazy_raster,
    raster_pyramid,
    read_annotations,
    write_annotations,
    write_label_tiff,
)
from napari_patchwise.io.mask import MaskMap
from napari_patchwise.io.pyramid import build_pyramid
from napari_patchwise.io.tables import read_table
from napari_patchwise.slide import BACKGROUND, HEALTHY, TUMOR


# -- references ------------------------------------------------------------------------------
def centre_in_rings(rings, shape) -> np.ndarray:
    """Brute force: every pixel centre against every edge (even-odd over the rings)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    inside = np.zeros(shape, bool)
    for ring in rings:
        ring = np.asarray(ring, float)
        for (xi, yi), (xj, yj) in zip(ring, np.roll(ring, -1, axis=0), strict=True):
            if yi == yj:
                continue
            span = (min(yi, yj) <= yy) & (yy < max(yi, yj))
            with np.errstate(divide="ignore", invalid="ignore"):
                crossing = (xj - xi) * (yy - yi) / (yj - yi) + xi
            inside ^= span & (xx < crossing)
    return inside


def reference(features, values, shape) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for feature, value in zip(features, values, strict=True):
        for rings in feature.polygons:
            covered = centre_in_rings(rings, shape)
            out[covered] = np.maximum(out[covered], value)
    return out


def skimage_reference(features, values, shape) -> np.ndarray:
    """scikit-image's fill, its sample points moved to the pixel centres (x - 0.5)."""
    out = np.zeros(shape, np.uint8)
    for feature, value in zip(features, values, strict=True):
        for shell, *holes in feature.polygons:
            covered = polygon2mask(shape, shell[:, ::-1] - 0.5)
            for hole in holes:
                covered &= ~polygon2mask(shape, hole[:, ::-1] - 0.5)
            out[covered] = np.maximum(out[covered], value)
    return out


def rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], float)


def random_features(rng, shape, n=14, *, integer=False):
    """Stars, rectangles with holes and two-part multipolygons, some off the image."""
    h, w = shape
    features, values = [], []
    for k in range(n):
        centre = rng.uniform(-5, [w + 5, h + 5])
        t = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 14))))
        radius = rng.uniform(3, 40, len(t))
        star = np.c_[centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)]
        if k % 3 == 0:  # a shell with a hole
            x0, y0 = centre
            size = rng.uniform(12, 60)
            hole = np.c_[
                x0 + size * np.array([0.2, 0.7, 0.3]), y0 + size * np.array([0.2, 0.4, 0.8])
            ]
            polygons = ((rect(x0, y0, x0 + size, y0 + size), hole),)
        elif k % 3 == 1:  # a multipolygon
            polygons = ((star,), (star + rng.uniform(-30, 30, 2),))
        else:
            polygons = ((star,),)
        if integer:
            polygons = tuple(tuple(np.round(r) for r in p) for p in polygons)
        features.append(Feature("x", None, polygons))
        values.append(int(rng.integers(1, 3)))
    return features, np.array(values, np.uint8)


# -- rasterisation ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer", [False, True])
def test_raster_matches_the_centre_rule_across_chunks(seed, integer):
    # integer vertices put pixel centres exactly on 45-degree edges: the tie rule counts
    shape = (97, 131)
    features, values = random_features(np.random.default_rng(seed), shape, integer=integer)
    expected = reference(features, values, shape)
    assert {0, 1, 2} <= set(np.unique(expected))  # overlapping classes really happen
    raster = AnnotationRaster(EdgeIndex(features, values, shape[0]), shape)
    for chunk in (7, 16, 50, 256):
        got = lazy_raster(raster, chunk).compute()
        np.testing.assert_array_equal(got, expected, err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("seed", [3, 4])
def test_raster_matches_skimage_polygon_fill(seed):
    shape = (83, 120)
    features, values = random_features(np.random.default_rng(seed), shape)
    raster = AnnotationRaster(EdgeIndex(features, values, shape[0]), shape)
    np.testing.assert_array_equal(
        lazy_raster(raster, 32).compute(), skimage_reference(features, values, shape)
    )


def test_tie_rule_is_javas_insideness():
    # a right triangle with its hypotenuse through pixel centres: centres on the left
    # edge and on the top edge are inside (the shape lies to their right / below),
    # centres on the hypotenuse with the shape to their left are not
    tri = Feature("t", None, ((np.array([[0.5, 0.5], [4.5, 0.5], [0.5, 4.5]]),),))
    got = AnnotationRaster(EdgeIndex([tri], np.array([1]), 6), (6, 6))[:, :]
    expected = np.zeros((6, 6), np.uint8)
    for r in range(4):
        expected[r, : 4 - r] = 1  # x + y < 5 in centres: the hypotenuse excluded
    np.testing.assert_array_equal(got, expected)


def test_rectangles_on_pixel_edges_cover_exactly_their_pixels():
    features = [
        Feature("a", None, ((rect(2, 3, 9, 7),),)),
        Feature("b", None, ((rect(5, 0, 6, 10),),)),
    ]
    got = AnnotationRaster(EdgeIndex(features, np.array([1, 2]), 10), (10, 12))[:, :]
    expected = np.zeros((10, 12), np.uint8)
    expected[3:7, 2:9] = 1
    expected[0:10, 5:6] = 2
    np.testing.assert_array_equal(got, expected)


def test_display_pyramid_equals_nearest_downsampling():
    shape = (301, 205)
    features, values = random_features(np.random.default_rng(5), shape, n=30)
    for f in features:  # spread them over the larger image
        for p in f.polygons:
            for r in p:
                r *= 2
    raster = AnnotationRaster(EdgeIndex(features, values, shape[0]), shape)
    direct = raster_pyramid(raster, min_size=20)
    coarsened = build_pyramid(lazy_raster(raster, 64), min_size=20, method="nearest")
    assert [d.shape for d in direct] == [c.shape for c in coarsened] and len(direct) == 5
    for d, c in zip(direct, coarsened, strict=True):
        np.testing.assert_array_equal(d.compute(), c.compute())


def test_strided_and_fancy_reads():
    shape = (60, 70)
    features, values = random_features(np.random.default_rng(6), shape)
    raster = AnnotationRaster(EdgeIndex(features, values, shape[0]), shape)
    full = reference(features, values, shape)
    np.testing.assert_array_equal(raster[3:50:4, 1::3], full[3:50:4, 1::3])
    np.testing.assert_array_equal(raster[7], full[7])
    np.testing.assert_array_equal(raster[[2, 9, 40], 5:9], full[[2, 9, 40], 5:9])
    np.testing.assert_array_equal(raster[-1, -3], full[-1, -3])


def test_a_50k_mask_is_lazy_and_each_chunk_reads_only_its_polygons(tmp_path):
    # 400 squares over a 50k x 50k slide: building the mask reads no pixel, a chunk far
    # from a square fills nothing, a chunk under one is exact
    squares = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [rect(x, y, x + 100, y + 100).tolist()]},
         "properties": {"classification": {"name": "Tumor"}}}
        for x in range(1000, 50_000, 2500) for y in range(1000, 50_000, 2500)
    ]  # fmt: skip
    path = tmp_path / "big.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": squares}))
    start = time.perf_counter()
    mask, factor, kind = read_mask(path, (50_000, 50_000), "Tumor=tumor")
    assert time.perf_counter() - start < 5 and (factor, kind) == (1, "binary")
    assert mask.shape == (50_000, 50_000) and mask.dtype == np.uint8
    assert mask.chunksize == (2048, 2048)
    region = mask[3450:3650, 3450:3650].compute()  # the square at x = y = 3500
    assert region.sum() == 100 * 100 * TUMOR and region[50:150, 50:150].all()
    assert not mask[3700:5900, 3700:5900].compute().any()  # between squares
    # the index hands a region only the edges of the polygons under it: the two
    # vertical sides of the one square in the first chunk (horizontal edges cross no row)
    features = read_annotations(path)
    index = EdgeIndex(features, np.full(len(features), TUMOR, np.uint8), 50_000)
    ids = index.edges_between(0.5, 2047.5, 0.5, 2047.5)
    assert sorted(index.x0[ids].tolist()) == [1000.0, 1100.0]


# -- the file format ----------------------------------------------------------------------------
def qupath_export() -> dict:
    """A QuPath 0.4-style export (File > Export objects as GeoJSON), built by hand.

    Tumor: x 10..40, y 20..50 with a 10 x 10 hole at x 20..30, y 30..40 (800 pixels).
    Stroma: a MultiPolygon: x 0..20, y 0..10 and x 50..60, y 50..70 (200 + 200), under the
    tumor's top-left corner nowhere; Other: x 30..50, y 40..60 overlapping the tumor at
    x 30..40, y 40..50 (tumor wins there). An unclassified region and a point annotation.
    """

    def feature(geometry, cls=None, **extra):
        props = {"objectType": "annotation", "isLocked": False, **extra}
        if cls is not None:
            props["classification"] = cls
        return {"type": "Feature", "id": "8f1e-" + str(len(geometry["coordinates"])),
                "geometry": geometry, "properties": props}  # fmt: skip

    return {
        "type": "FeatureCollection",
        "features": [
            feature({"type": "Polygon", "coordinates": [rect(10, 20, 40, 50).tolist(), rect(20, 30, 30, 40).tolist()]},
                    {"name": "Tumor", "color": [200, 0, 0]}),
            feature({"type": "MultiPolygon", "coordinates": [[rect(0, 0, 20, 10).tolist()], [rect(50, 50, 60, 70).tolist()]]},
                    {"name": "Stroma", "color": [150, 200, 150]}),
            feature({"type": "Polygon", "coordinates": [rect(30, 40, 50, 60).tolist()]}, {"name": "Other", "colorRGB": -16711936}),
            feature({"type": "Polygon", "coordinates": [rect(0, 60, 10, 80).tolist()]}, name="Region 1"),
            feature({"type": "Point", "coordinates": [5, 5]}, {"name": "Tumor"}),
        ],
    }  # fmt: skip


QUPATH_MAP = "Tumor=tumor,Stroma=healthy,Other=healthy,unclassified=background"


def qupath_expected() -> np.ndarray:
    m = np.zeros((80, 70), np.uint8)
    m[0:10, 0:20] = HEALTHY
    m[50:70, 50:60] = HEALTHY
    m[40:60, 30:50] = HEALTHY
    m[20:50, 10:40] = TUMOR
    m[30:40, 20:30] = BACKGROUND  # the hole
    return m


def test_a_qupath_export_reads_as_exact_classes(tmp_path):
    path = tmp_path / "slide.geojson"
    path.write_text(json.dumps(qupath_export(), indent=2))
    mask, _, kind = read_mask(path, (80, 70), QUPATH_MAP)
    got = mask.compute()
    np.testing.assert_array_equal(got, qupath_expected())
    assert kind == "3class" and np.bincount(got.ravel()).tolist() == [80 * 70 - 1500, 700, 800]
    features = read_annotations(path)
    assert [f.name for f in features] == ["Tumor", "Stroma", "Other", None]  # the point: no area
    assert [f.color for f in features[:3]] == [(200, 0, 0), (150, 200, 150), (0, 255, 0)]


def test_older_qupath_forms_and_a_bare_list(tmp_path):
    features = qupath_export()["features"]
    features[0]["properties"]["classification"] = "Tumor"  # a bare name (scripts)
    features[1]["properties"]["classification"] = {"names": ["Stroma"], "colorRGB": -6895466}
    path = tmp_path / "old.json"  # QuPath 0.2 wrote a bare list of features
    path.write_text(json.dumps(features))
    mask, _, _ = read_mask(path, (80, 70), QUPATH_MAP.lower())  # names ignore case
    np.testing.assert_array_equal(mask.compute(), qupath_expected())


def test_class_names_must_be_mapped(tmp_path):
    path = tmp_path / "slide.geojson"
    path.write_text(json.dumps(qupath_export()))
    with pytest.raises(PatchwiseError) as err:
        read_mask(path, (80, 70), "Tumor=tumor")
    assert str(err.value) == (
        f"{path}: annotations of classes Other (1), Stroma (1), unclassified (1) are not in "
        "the mask map Tumor=tumor — name every class in the mask map, e.g. --mask-map "
        "'Tumor=tumor,Stroma=healthy,Other=healthy' (unclassified=CLASS for annotations "
        "without a class)."
    )
    # without names, a map accepts the class names themselves, for the classes it uses
    tumor_only = {"type": "FeatureCollection", "features": qupath_export()["features"][:1]}
    path.write_text(json.dumps(tumor_only))
    mask, _, kind = read_mask(path, (80, 70))  # default map: 3 classes
    assert kind == "3class" and int(mask.sum().compute()) == 800 * TUMOR
    assert read_mask(path, (80, 70), "binary")[2] == "binary"
    tumor_only["features"][0]["properties"]["classification"]["name"] = "Healthy"
    path.write_text(json.dumps(tumor_only))
    with pytest.raises(
        PatchwiseError, match=r"classes Healthy \(1\) are not in the mask map 0=back"
    ):
        read_mask(path, (80, 70), "binary")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a GeoJSON file: Expecting property name enclosed in double quotes at line 1 column 2"),
        ('{"type": "Polygon", "coordinates": []}', "not a GeoJSON FeatureCollection or list of features"),
        ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", 1]]]},'
         ' "properties": {"classification": {"name": "Tumor"}}}]',
         "feature 0 (Tumor): Polygon coordinates are not rings of [x, y] numbers"),
        ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[500, 500], [600, 500], [600, 600]]]},'
         ' "properties": {"classification": {"name": "Tumor"}}}]',
         "the annotations (x 500 to 600, y 500 to 600) lie outside the image (70 x 80 pixels)"),
    ],
)  # fmt: skip
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(PatchwiseError) as err:
        read_mask(path, (80, 70), "Tumor=tumor")
    assert str(err.value).startswith(f"{path}: {message}")


def test_written_annotations_and_label_tiff_read_back_the_same(tmp_path):
    shape = (90, 110)
    features, values = random_features(np.random.default_rng(8), shape)
    named = [
        Feature(["", "Stroma", "Tumor"][v], (1, 2, 3), f.polygons)
        for f, v in zip(features, values, strict=True)
    ]
    geojson = write_annotations(tmp_path / "a.geojson", named)
    assert json.loads(geojson.read_text())["features"][0]["properties"]["classification"][
        "color"
    ] == [1, 2, 3]
    spec = "Tumor=tumor,Stroma=healthy"
    from_geojson = read_mask(geojson, shape, spec)[0].compute()
    np.testing.assert_array_equal(from_geojson, reference(features, values, shape))
    tif = write_label_tiff(tmp_path / "a.ome.tif", named, shape, MaskMap.parse(spec).name_classes())
    np.testing.assert_array_equal(tifffile.imread(tif), from_geojson)
    np.testing.assert_array_equal(read_mask(tif, shape)[0].compute(), from_geojson)


# -- slides and the CLI --------------------------------------------------------------------
def _slide(tmp_path, shape=(80, 70)) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "slide.ome.tif"
    tifffile.imwrite(
        path, rng.integers(0, 255, (3, *shape), dtype=np.uint8), metadata={"axes": "CYX"}
    )
    return str(path)


def test_open_slide_carries_the_geojson_mask_and_its_display_pyramid(tmp_path):
    from napari_patchwise.io.annotations import mask_pyramid

    geojson = tmp_path / "slide.geojson"
    geojson.write_text(json.dumps(qupath_export()))
    slide = open_slide(_slide(tmp_path), mask=geojson, mask_map=QUPATH_MAP)
    assert (slide.mask_factor, slide.mask_kind, slide.mask_path) == (1, "3class", geojson)
    np.testing.assert_array_equal(slide.mask.compute(), qupath_expected())
    assert mask_pyramid(slide.mask)[0] is slide.mask


def test_stats_with_a_geojson_equals_stats_with_its_label_tiff(tmp_path):
    image = _slide(tmp_path)
    geojson = tmp_path / "slide.geojson"
    geojson.write_text(json.dumps(qupath_export()))
    tif = tmp_path / "slide_mask.tif"
    tifffile.imwrite(tif, qupath_expected())
    common = ["--patch-size", "10", "--tissue", "mask", "--quiet"]
    assert main(["stats", image, "--mask", str(geojson), "--mask-map", QUPATH_MAP,
                 "--out", str(tmp_path / "g.csv"), *common]) == 0  # fmt: skip
    assert (
        main(["stats", image, "--mask", str(tif), "--out", str(tmp_path / "t.csv"), *common]) == 0
    )
    from_geojson, from_tif = read_table(tmp_path / "g.csv"), read_table(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(from_geojson, from_tif)
    assert int(from_geojson["n_tumor"].sum()) == 800 and int(from_geojson["n_tissue"].sum()) == 1500
    # a cohort manifest names the GeoJSON in its mask column
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"image,mask,split\n{image},slide.geojson,train\n")
    out = str(tmp_path / "m.csv")
    assert main(["stats", str(manifest), "--mask-map", QUPATH_MAP, "--out", out, *common]) == 0
    np.testing.assert_array_equal(read_table(tmp_path / "m.csv")["n_tumor"], from_tif["n_tumor"])


def test_stats_names_the_unmapped_classes(tmp_path, capsys):
    geojson = tmp_path / "slide.geojson"
    geojson.write_text(json.dumps(qupath_export()))
    rc = main(["stats", _slide(tmp_path), "--mask", str(geojson), "--mask-map", "Tumor=tumor",
               "--patch-size", "10", "--out", str(tmp_path / "g.csv"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "classes Other (1), Stroma (1), unclassified (1)" in err[0]
    assert not (tmp_path / "g.csv").exists()


def test_the_mask_graph_pickles_for_distributed_workers(tmp_path):
    import pickle

    path = tmp_path / "slide.geojson"
    path.write_text(json.dumps(qupath_export()))
    mask = read_mask(path, (80, 70), QUPATH_MAP)[0]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mask)).compute(), qupath_expected())


def test_an_empty_export_is_a_slide_without_annotations(tmp_path):
    path = tmp_path / "none.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    mask, factor, kind = read_mask(path, (30, 20), "Tumor=tumor,Stroma=healthy")
    assert (factor, kind) == (1, "3class") and not mask.compute().any()


def test_a_training_cohort_reads_geojson_masks_and_keys_its_cache_by_the_map(tmp_path):
    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.data import load_cohort

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lines = ["image,mask,split,slide"]
    for folder, split in (("a", "train"), ("b", "val")):
        image = _slide(tmp_path / folder)
        (tmp_path / folder / "slide.geojson").write_text(json.dumps(qupath_export()))
        lines.append(f"{image},{folder}/slide.geojson,{split},{folder}")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    settings = PatchSettings(patch_size=10, tissue="mask", mask_map=QUPATH_MAP)
    cohort = load_cohort(manifest, settings)
    expected = qupath_expected().reshape(8, 10, 7, 10)
    n_tumor = (expected == TUMOR).sum(axis=(1, 3)).ravel()
    for split in ("train", "val"):
        np.testing.assert_array_equal(cohort.table(split)["n_tumor"].to_numpy(), n_tumor)
    # another map is another cache entry: Other as tumor moves its pixels into n_tumor
    other_map = "Tumor=tumor,Stroma=healthy,Other=tumor,unclassified=background"
    other = PatchSettings(patch_size=10, tissue="mask", mask_map=other_map)
    assert int(load_cohort(manifest, other).table("train")["n_tumor"].sum()) == 800 + 300
