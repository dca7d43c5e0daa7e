"""napari's file side: the npe2 reader (slides as pyramid layers, masks as labels), GeoJSON
annotations in and out, sample data, layers back to a :class:`~napari_patchwise.slide.Slide`.
"""
