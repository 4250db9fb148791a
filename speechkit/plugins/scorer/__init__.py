"""Built-in scorer components (registered exactly like third-party plugins)."""
