"""The one colour-blind-safe palette: used everywhere, distinguishable under colour blindness.

Colour-vision deficiency is simulated with the matrices of Machado, Oliveira & Fernandes
(2009), "A Physiologically-based Model for Simulation of Color Vision Deficiency", IEEE
TVCG 15(6):1291-1298, at severity 1.0 (dichromacy), applied to linear sRGB. Differences
are CIELAB ΔE76 (Euclidean distance in L*a*b*, D65 white).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_patchwise import palette
from napari_patchwise.groups import GROUP_NAMES

MACHADO_2009 = {
    "protanopia": (
        (0.152286, 1.052583, -0.204868),
        (0.114503, 0.786281, 0.099216),
        (-0.003882, -0.048116, 1.051998),
    ),
    "deuteranopia": (
        (0.367322, 0.860646, -0.227968),
        (0.280085, 0.672501, 0.047413),
        (-0.011820, 0.042940, 0.968881),
    ),
    "tritanopia": (
        (1.255528, -0.076749, -0.178779),
        (-0.078411, 0.930809, 0.147602),
        (0.004733, 0.691367, 0.303900),
    ),
    "normal vision": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
}
#: Minimum ΔE76 between any two colours of one categorical set, under every simulation.
DELTA_E_FLOOR = 15.0


def linear_rgb(hex_color: str) -> np.ndarray:
    c = np.asarray(palette.rgb255(hex_color), dtype=float) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def cielab(linear: np.ndarray) -> np.ndarray:
    xyz_of_rgb = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = xyz_of_rgb @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def min_delta_e(colours, matrix) -> float:
    labs = [cielab(np.clip(np.asarray(matrix) @ linear_rgb(c), 0, 1)) for c in colours]
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(labs, 2))


def test_delta_e_of_known_colours():
    # white vs black is L* 100 apart; a colour against itself 0
    assert min_delta_e(("#FFFFFF", "#000000"), MACHADO_2009["normal vision"]) == pytest.approx(
        100.0, abs=0.01
    )
    # red and green collapse under deuteranopia (the simulation does something)
    normal = min_delta_e(("#FF0000", "#00FF00"), MACHADO_2009["normal vision"])
    assert normal > 80 and min_delta_e(("#FF0000", "#00FF00"), MACHADO_2009["deuteranopia"]) < 40


@pytest.mark.parametrize("vision", list(MACHADO_2009))
@pytest.mark.parametrize("name", list(palette.CATEGORICAL_SETS))
def test_every_categorical_set_stays_distinguishable(name, vision):
    colours = palette.CATEGORICAL_SETS[name]
    assert len(set(colours)) == len(colours) >= 2
    assert min_delta_e(colours, MACHADO_2009[vision]) >= DELTA_E_FLOOR, (name, vision)


def test_tumor_and_non_tumor_keep_their_hues_everywhere():
    from napari_patchwise._napari.canvas import overlays
    from napari_patchwise._napari.compare_tab import data as compare_data
    from napari_patchwise._napari.reader import layers as reader
    from napari_patchwise.io import tables
    from napari_patchwise.reporting import figures as report

    tumor, non_tumor = palette.TUMOR, palette.NON_TUMOR
    assert {1: non_tumor, 2: tumor} == overlays.LABEL_COLORS
    assert reader.MASK_COLORS[1] == non_tumor and reader.MASK_COLORS[2] == tumor
    groups = dict(zip(GROUP_NAMES, overlays.GROUP_COLORS, strict=True))
    assert groups["non-tumor/small"] == non_tumor and groups["tumor/large"] == tumor
    assert tables._CLASS_COLORS["tumor"] == palette.rgb255(tumor)
    assert tables._CLASS_COLORS["non-tumor"] == palette.rgb255(non_tumor)
    for name, colour in groups.items():
        assert tables._CLASS_COLORS[name] == palette.rgb255(colour)
    assert compare_data.COMPARE_COLORS[1:] == palette.COMPARE_COLORS
    assert overlays.CORRECTNESS_COLORS == palette.CORRECTNESS_COLORS
    assert (report.CORRECT_COLOR, report.INCORRECT_COLOR) == (
        palette.CORRECT_COLOR,
        palette.INCORRECT_COLOR,
    )
