"""The napari adapter: reader, sample data, the Patchwise dock widget and its overlays.

Everything that imports napari or Qt lives here; the rest of the package runs headless.
"""
