"""Argument parsing for the ``bin/`` entry points (one module per stage)."""
