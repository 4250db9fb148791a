"""Built-in frontend components (registered exactly like third-party plugins)."""
