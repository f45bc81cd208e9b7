"""`forgery ablate`: a grid of training options, trained, evaluated and tabulated (grid, run, table)."""
