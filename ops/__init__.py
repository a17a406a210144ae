"""Operations: deployment files, runbook and benchmarks (``python -m ops.bench``)."""
