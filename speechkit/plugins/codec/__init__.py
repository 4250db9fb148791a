"""Built-in codec components (registered exactly like third-party plugins)."""
