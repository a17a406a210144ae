"""The ``aijobs`` command line."""

from aijobs.cli.main import main

__all__ = ["main"]
