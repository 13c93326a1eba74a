"""The bottom layer: atomic files, registries, provenance, integrity seals, stage plans and every path."""
