"""What the dock draws on napari's canvas: patch overlays and their legend, the minimap,
navigation to patches, the patch inspector.
"""
