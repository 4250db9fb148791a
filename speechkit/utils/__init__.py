"""Small shared helpers (filesystem, logging, stage markers)."""
