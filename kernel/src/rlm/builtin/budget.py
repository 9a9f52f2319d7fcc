"""Built-in plugin: the default budget policy."""

from __future__ import annotations

from rlm.hookspecs import hookimpl


def default_policy(config):
    from rlm.budget import DefaultBudgetPolicy

    return DefaultBudgetPolicy(max_depth=config.max_depth, max_subcalls=config.max_subcalls,
                               sub_calls=config.sub_calls)


@hookimpl
def rlm_register_budget_policies(register):
    register("default", default_policy,
             description="token and cost budgets, recursion depth and sub-calls per turn")
