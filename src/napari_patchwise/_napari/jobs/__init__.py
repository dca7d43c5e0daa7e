"""Background work of the dock: the one job runner, napari thread workers, progress bars,
and the grid, training and prediction jobs (no layers touched off the main thread).
"""
