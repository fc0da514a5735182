"""``qmpdirty demo`` and its lab: real QEMUs, a broker and a dirtying guest.

Not part of the daemon: only the CLI's ``demo`` command, the tests and the
benchmarks import it (an import-linter contract keeps the product out).
"""
