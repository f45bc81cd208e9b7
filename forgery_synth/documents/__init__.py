"""Synthetic documents (ID cards, invoices, certificates) with layout sidecars, and what the text
forgery methods need to find and redraw text: fonts with CJK glyphs, seals, text-line detection."""
