"""Results of a recipe run: per-task metrics with confidence intervals, and the rendered RESULTS.md."""
