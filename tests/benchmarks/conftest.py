"""The benchmarks are scripts (``python tests/benchmarks/run.py``), not tests: pytest skips them."""

collect_ignore_glob = ["*"]
