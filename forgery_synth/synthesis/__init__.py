"""The synthesis engine: image loading, EXIF, the global post chain, render and replay."""
