"""How slides are cut into patches and where tissue comes from: :class:`PatchSettings`.

The one declaration of the grid and tissue options, shared by the CLI (``stats``,
``predict``, ``train``...), the training patch cache (its key), the viewer's dock and the
patch-table files (their metadata, :mod:`.patch_table`). ``None`` always means
"automatic": the patch size for the stride, Otsu's threshold for the tissue threshold,
the slide's own background.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PatchwiseError

#: Side of a patch (level-0 pixels) when none is given.
DEFAULT_PATCH_SIZE = 64


@dataclass(frozen=True)
class PatchSettings:
    """How slides are cut into patches and where tissue comes from (cache-key inputs).

    The one declaration of these options: :class:`~napari_patchwise.training.loop.TrainConfig`
    holds one (``config.patch``) and exposes its fields as its own flags and
    ``config.json`` keys (``--patch-size``, ``"patch_size"``...); the viewer's dock keeps
    one per slide.

    Parameters
    ----------
    patch_size : int
        Side of the square patches (level-0 pixels).
    stride : int, optional
        Distance between neighbouring patches; ``None``: the patch size (tiling).
    tissue : {"auto", "mask", "intensity"}
        Where tissue comes from (:func:`~napari_patchwise.patches.grid.patch_stats`).
    tissue_threshold : float, optional
        Brightness threshold of intensity tissue; ``None``: Otsu's.
    background : {"dark", "bright"}, optional
        ``None``: each slide's own (bright for brightfield whole-slide images).
    mask_map : str, optional
        Mask values -> classes; ``None``: the default map.
    keep_edges : bool
        Also keep the patches that run past the image's bottom or right edge.
    """

    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int | None = None
    tissue: str = "auto"
    tissue_threshold: float | None = None
    background: str | None = None  # None: each slide's own (bright for brightfield WSI)
    mask_map: str | None = None
    keep_edges: bool = False

    def validate(self) -> None:
        """Refuse a patch size or stride below one (one-line :class:`PatchwiseError`)."""
        if not self.patch_size > 0:
            raise PatchwiseError(
                f"patch size must be positive, got {self.patch_size}", hint="e.g. 64"
            )
        if self.stride is not None and not self.stride > 0:
            raise PatchwiseError(
                f"stride must be positive, got {self.stride}",
                hint="e.g. --stride 64, or leave it out",
            )
