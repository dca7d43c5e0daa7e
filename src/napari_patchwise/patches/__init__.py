"""Slide + settings -> patch table: the patch grid, exact per-patch tissue and tumor counts
chunk by chunk, extra per-patch attributes, and the one builder of :class:`~.table.PatchTable`.
"""
