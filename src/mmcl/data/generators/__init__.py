"""Suite generators: each writes every task of a suite in the common instruction format.

A generator is built from the suite's config and writes the suite with ``generate(out_dir)``, or, when
it has ``reads_datasets`` set, ``generate(out_dir, data_root)`` from the converted datasets under
``data_root``; it returns a summary for the suite's ``manifest.json``.
"""
