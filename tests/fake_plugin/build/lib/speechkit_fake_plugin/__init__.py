"""A third-party speechkit plugin, packaged on its own, used by the test suite."""
