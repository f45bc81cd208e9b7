"""Where a forgery goes: region shapes, object proposals (SLIC, SAM) and mask polygons."""
