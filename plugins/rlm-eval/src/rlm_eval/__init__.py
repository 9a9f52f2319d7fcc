"""rlm-eval: offline long-context benchmarks for rlm (rlm eval)."""
