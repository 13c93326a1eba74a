"""Suite generators: each writes every task of a suite in the common instruction format."""
