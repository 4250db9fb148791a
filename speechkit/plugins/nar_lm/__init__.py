"""Built-in non-autoregressive codec LMs (registered exactly like third-party plugins)."""
