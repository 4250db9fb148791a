"""Built-in components, written exactly like third-party plugins."""
