"""Benchmarks, each beside its baseline in the same run: ``python -m ops.bench [--smoke]``.

Run from the repository root (``ops`` is not installed; ``-m`` finds it in the working
directory). Every process is started through :mod:`aijobs.devtools.harness`.
"""
