"""The synthesis engine: photos in, a samples directory out.

The primitives the methods share (regions, blends, polygons, the one image loader, EXIF, the global
post chain) and the engine over them (options and seeds, the job, render and replay).
"""
