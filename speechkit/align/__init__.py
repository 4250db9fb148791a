"""Monotonic phone -> frame alignment without an external model (Glow-TTS-style MAS).

``mas``: the search itself; ``model``: the phone aligner (per-phone feature means);
``train``: fitting it on a corpus and aligning sets; ``durations``: ``dump/<set>/durations``
files and the hook that adds durations to AR training items; ``report``: plots and statistics.
"""
from speechkit.align.durations import add_durations, pair_durations, read_durations, write_durations
from speechkit.align.mas import durations_to_frame_phones, frame_phones_to_durations, monotonic_alignment_search
from speechkit.align.model import AlignerConfig, PhoneAligner

__all__ = [
    "AlignerConfig",
    "PhoneAligner",
    "add_durations",
    "durations_to_frame_phones",
    "frame_phones_to_durations",
    "monotonic_alignment_search",
    "pair_durations",
    "read_durations",
    "write_durations",
]
