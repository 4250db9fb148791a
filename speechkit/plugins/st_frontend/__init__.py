"""Built-in speech recognition & translation frontends (``st_frontend`` kind)."""
