"""One module per ``mmcl`` command: each loads what it needs, does the work, seals its outputs and records
their provenance; ``params.load_params`` is what every one of them (and the Snakefile) reads params.yaml with."""
