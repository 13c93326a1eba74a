"""params.yaml as typed dataclasses: the schema, its value ranges, error messages, fingerprints and the reader."""
