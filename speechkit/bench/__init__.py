"""Benchmarks that print figures (`speechkit bench <what>`)."""
