"""The hook implementations of rlm-eval (cheap to import: nothing but the kernel's hookimpl)."""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_commands(register):
    register("eval", "rlm_eval.command:eval_command",
             help="long-context benchmarks (sniah, oolong, pairs) generated offline: base model vs RLM")
