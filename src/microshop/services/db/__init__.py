"""db: the shop's storage service; the only one that owns data."""
