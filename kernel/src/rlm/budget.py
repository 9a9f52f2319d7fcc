"""Budgets: a tree of spending nodes, reservations, and the policy interface.

Every LLM call belongs to a :class:`BudgetNode`; nodes form a tree that
mirrors the call tree (session -> run -> call -> sub-call ...).  Spending is
charged to a node and all its ancestors, so a child can never spend what an
ancestor does not have.  Before an LLM call the orchestrator *reserves* an
upper bound of its tokens and cost on the whole chain, then *settles* the
reservation with the actual usage; concurrent siblings (a batch) therefore
cannot oversubscribe a shared budget.  Everything here is synchronous and
runs on the event loop's thread, so check-and-reserve is atomic.

Budget policies (plugins, see ``rlm_register_budget_policies``) look at a
:class:`SpendRequest` and refuse it with a :class:`Refusal`, or allow it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal, Protocol

from attrs import define, field

LimitName = Literal["token_budget", "cost_limit", "session_cost_cap", "max_depth", "max_subcalls", "max_turns",
                    "timeout", "context_window"]

#: The product text's hard caps, the one definition: a configured value above one is clamped to it
#: (:func:`rlm.core.clamp_to_caps`, with a warning); config help, flag fixes and limit messages quote it.
HARD_CAPS: Mapping[str, float] = {"max_depth": 5, "cost_limit": 10.0, "timeout": 600.0}


def cap_text(key: str) -> str:
    """A hard cap as the messages quote it: ``"5"``, ``"$10"``, ``"600 s"``."""
    value = HARD_CAPS[key]
    number = f"{value:g}"
    return {"cost_limit": f"${number}", "timeout": f"{number} s"}.get(key, number)


#: The product text's troubleshooting table: what each limit says and how to fix it.
LIMIT_MESSAGES: dict[str, tuple[str, str]] = {
    "token_budget": ("Token budget exhausted", "increase token_budget or simplify the task"),
    "cost_limit": ("Cost limit exceeded", f"increase cost_limit (at most {cap_text('cost_limit')})"),
    "session_cost_cap": ("Session cost cap reached", "increase session_cost_cap or start a new session"),
    "max_depth": ("Recursion depth exceeded",
                  f"increase max_depth (at most {cap_text('max_depth')}) or reduce the task's scope"),
    "max_subcalls": ("Sub-call limit reached for this turn", "increase max_subcalls or batch fewer queries"),
    "max_turns": ("Turn limit reached", "increase max_turns or simplify the task"),
    "timeout": ("Run timeout reached",
                f"increase timeout (at most {cap_text('timeout')}) or simplify the task"),
    "context_window": ("Input larger than the model's context window",
                       "let the RLM read it from the REPL (lower direct_below_tokens) or use a model with a larger "
                       "window"),
}


@define(frozen=True, kw_only=True)
class Refusal:
    """Why a policy refused: the limit's name, a message and the fix."""

    limit: str
    message: str
    fix: str = ""

    @classmethod
    def of(cls, limit: str, detail: str = "") -> Refusal:
        message, fix = LIMIT_MESSAGES.get(limit, (limit, ""))
        return cls(limit=limit, message=f"{message}{': ' + detail if detail else ''}", fix=fix)

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


@define(kw_only=True, eq=False)
class BudgetNode:
    """Spending of one call (or run, or session) and the limits that bound it.

    ``token_limit``/``cost_limit`` are this node's own limits (None: only the
    ancestors' apply).  Mutable on purpose: it is a live ledger.
    """

    name: str
    parent: BudgetNode | None = None
    token_limit: int | None = None
    cost_limit: float | None = None
    cost_limit_name: str = "cost_limit"
    tokens_spent: int = 0
    cost_spent: float = 0.0
    tokens_reserved: int = 0
    cost_reserved: float = 0.0
    children: list[BudgetNode] = field(factory=list, repr=False)

    def chain(self) -> list[BudgetNode]:
        """This node and its ancestors, nearest first."""
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes

    def remaining_tokens(self) -> float:
        """Tokens this node may still reserve (``inf`` when nothing limits it)."""
        return min(
            (n.token_limit - n.tokens_spent - n.tokens_reserved for n in self.chain() if n.token_limit is not None),
            default=math.inf,
        )

    def remaining_cost(self) -> float:
        """USD this node may still reserve (``inf`` when nothing limits it)."""
        return min(
            (n.cost_limit - n.cost_spent - n.cost_reserved for n in self.chain() if n.cost_limit is not None),
            default=math.inf,
        )

    def binding_cost_limit(self) -> str:
        """The name of the cost limit that leaves the least (for messages)."""
        limited = [n for n in self.chain() if n.cost_limit is not None]
        if not limited:
            return "cost_limit"
        return min(limited, key=lambda n: n.cost_limit - n.cost_spent - n.cost_reserved).cost_limit_name  # type: ignore[operator]

    def child(self, name: str, *, tokens: int | None = None, cost: float | None = None,
              share: float = 0.5) -> BudgetNode:
        """A child node with ``min(requested, share x remaining)`` of this node's budget.

        With ``share=1.0`` and nothing requested the child simply draws on
        this node (used for the calls of a batch, which share one budget).
        """
        token_limit = _portion(tokens, self.remaining_tokens(), share)
        cost_limit = _portion(cost, self.remaining_cost(), share)
        node = BudgetNode(
            name=name,
            parent=self,
            token_limit=None if token_limit is None else int(token_limit),
            cost_limit=cost_limit,
        )
        self.children.append(node)
        return node

    def reserve(self, tokens: int, cost: float) -> Reservation:
        """Hold ``tokens``/``cost`` on the whole chain until :meth:`settle`."""
        for node in self.chain():
            node.tokens_reserved += tokens
            node.cost_reserved += cost
        return Reservation(node=self, tokens=tokens, cost=cost)

    def settle(self, reservation: Reservation, *, tokens: int, cost: float) -> None:
        """Replace a reservation by what was actually spent (charged to every ancestor)."""
        for node in self.chain():
            node.tokens_reserved -= reservation.tokens
            node.cost_reserved -= reservation.cost
            node.tokens_spent += tokens
            node.cost_spent += cost


def _portion(requested: float | None, remaining: float, share: float) -> float | None:
    if math.isinf(remaining) or (requested is None and share >= 1.0):
        return requested  # no own limit: the ancestors' limits still bind
    limit = max(0.0, remaining) * share
    return limit if requested is None else min(requested, limit)


@define(frozen=True, kw_only=True)
class Reservation:
    """Tokens and cost held on a node's chain for one in-flight call."""

    node: BudgetNode
    tokens: int
    cost: float


@define(frozen=True, kw_only=True)
class SpendRequest:
    """What the orchestrator is about to do, for policies to judge.

    ``kind`` is ``"llm_call"`` (with the tokens/cost it would reserve) or
    ``"sub_call"`` (a new child call at ``depth``; ``subcalls_this_turn``
    counts those the parent already started this turn, ``count`` how many
    this request starts).
    """

    kind: Literal["llm_call", "sub_call"]
    node: BudgetNode
    depth: int
    tokens: int = 0
    cost_usd: float = 0.0
    subcalls_this_turn: int = 0
    count: int = 1


class BudgetPolicy(Protocol):
    """A rule that allows or refuses spending."""

    def check(self, request: SpendRequest) -> Refusal | None:
        """None to allow; a :class:`Refusal` naming the limit to refuse."""
        ...


@define(frozen=True, kw_only=True)
class DefaultBudgetPolicy:
    """The kernel's policy: token and cost budgets on the whole chain, depth
    and sub-calls per turn."""

    max_depth: int
    max_subcalls: int
    sub_calls: bool = True

    def check(self, request: SpendRequest) -> Refusal | None:
        if request.kind == "sub_call":
            if not self.sub_calls:
                return Refusal(limit="max_subcalls", message="Sub-calls are disabled",
                               fix="enable them with --sub-calls or [rlm] sub_calls = true")
            if request.depth > self.max_depth:
                return Refusal.of("max_depth", f"a sub-call at depth {request.depth} > max_depth={self.max_depth}")
            if request.subcalls_this_turn + request.count > self.max_subcalls:
                return Refusal.of(
                    "max_subcalls",
                    f"{request.subcalls_this_turn} started this turn, {request.count} more asked, "
                    f"max_subcalls={self.max_subcalls}",
                )
        if request.tokens > request.node.remaining_tokens():
            left = max(0, int(request.node.remaining_tokens()))
            return Refusal.of("token_budget", f"{left} tokens left, {request.tokens} needed")
        if request.cost_usd > request.node.remaining_cost():
            limit = request.node.binding_cost_limit()
            left = max(0.0, request.node.remaining_cost())
            return Refusal.of(limit, f"${left:.4f} left, ${request.cost_usd:.4f} needed")
        return None
