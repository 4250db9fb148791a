"""One module per recipe stage: ``python -m speechkit.bin.<stage> --config conf/x.yaml ...``."""
