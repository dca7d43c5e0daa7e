"""The Patchwise dock: the widget, its evented model and bindings, the per-slide state, the
slide and grid settings, the sliders, table and session files.
"""
