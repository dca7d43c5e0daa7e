"""The one colour palette of Patchwise: mask, overlays, histograms, GeoJSON classes, report.

Okabe & Ito's colour-blind-safe set ("Color Universal Design", 2008). Tumor and
non-tumor keep the same hues everywhere: **blue hues are non-tumor** (sky blue, and blue
for large tissue), **orange hues are tumor** (orange for small tissue, vermillion); the
outcome and comparison colours add yellow, reddish purple, bluish green and grey. Every
categorical set here keeps a minimum colour difference under simulated deuteranopia,
protanopia and tritanopia (``tests/napari/test_palette.py``).

Core module: plain hex strings, no Qt, no napari.
"""

from __future__ import annotations

SKY_BLUE = "#56B4E9"
BLUE = "#0072B2"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
YELLOW = "#F0E442"
REDDISH_PURPLE = "#CC79A7"
BLUISH_GREEN = "#009E73"
GREY = "#BBBBBB"
DARK_GREY = "#666666"

#: Patch label: non-tumor, tumor (the overlay's values 1 and 2, the mask's classes).
NON_TUMOR = SKY_BLUE
TUMOR = VERMILLION
LABEL_COLORS: dict[int, str] = {1: NON_TUMOR, 2: TUMOR}
#: The mask's classes (0 background is transparent; values outside the map: grey).
MASK_COLORS: dict[object, str] = {0: "transparent", 1: NON_TUMOR, 2: TUMOR, None: GREY}
#: Groups in GROUP_NAMES order: non-tumor/small, non-tumor/large, tumor/small, tumor/large.
GROUP_COLORS: tuple[str, ...] = (SKY_BLUE, BLUE, ORANGE, VERMILLION)
#: Outcomes in CORRECTNESS_NAMES order (TN, FP, FN, TP): errors in the loud colours.
CORRECTNESS_COLORS: tuple[str, ...] = (BLUE, YELLOW, REDDISH_PURPLE, BLUISH_GREEN)
#: Run comparison classes: both right, both wrong, only A right, only B right.
COMPARE_COLORS: tuple[str, ...] = (GREY, YELLOW, VERMILLION, BLUE)
#: Histograms (dock and report): correct, incorrect, all patches (no predictions yet).
CORRECT_COLOR = BLUISH_GREEN
INCORRECT_COLOR = REDDISH_PURPLE
#: The incorrect share of a stacked bar is hatched too: told apart from the correct share
#: without its hue (a monochrome print, a viewer who cannot tell the two colours apart).
INCORRECT_HATCH = "///"
ALL_COLOR = DARK_GREY


def rgb255(hex_color: str) -> tuple[int, int, int]:
    """``"#RRGGBB"`` as three 0-255 integers."""
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


#: QuPath classification colours of the classes ``write_geojson`` writes.
GEOJSON_CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "non-tumor": rgb255(NON_TUMOR),
    "tumor": rgb255(TUMOR),
    **{
        name: rgb255(colour)
        for name, colour in zip(
            ("non-tumor/small", "non-tumor/large", "tumor/small", "tumor/large"),
            GROUP_COLORS,
            strict=True,
        )
    },
}

#: Every categorical colour set, by where it is used (tests check each one).
CATEGORICAL_SETS: dict[str, tuple[str, ...]] = {
    "labels": (NON_TUMOR, TUMOR),
    "mask": (NON_TUMOR, TUMOR, GREY),
    "groups": GROUP_COLORS,
    "outcome": CORRECTNESS_COLORS,
    "comparison": COMPARE_COLORS,
    "histograms": (CORRECT_COLOR, INCORRECT_COLOR),  # ALL_COLOR is shown alone
    "geojson label classes": tuple(
        "#{:02X}{:02X}{:02X}".format(*GEOJSON_CLASS_COLORS[n]) for n in ("non-tumor", "tumor")
    ),
    "geojson group classes": tuple(
        "#{:02X}{:02X}{:02X}".format(*rgb)
        for name, rgb in GEOJSON_CLASS_COLORS.items()
        if "/" in name
    ),
}
