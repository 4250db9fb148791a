"""Built-in autoregressive codec LMs (registered exactly like third-party plugins)."""
