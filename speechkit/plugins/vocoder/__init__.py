"""Built-in vocoder components (registered exactly like third-party plugins)."""
