"""Kaldi-style data directories, token dumps, datasets and samplers."""
