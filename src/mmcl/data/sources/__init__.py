"""Dataset adapters: one module per source format, each converting a downloaded dataset from its
native layout into the common instruction format (see ``base``). ``params.yaml`` names one in
``datasets.<name>.adapter``.
"""
