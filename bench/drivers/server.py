"""The scripted OpenAI-compatible server both sides talk to (run with *our* venv's python).

    python bench/drivers/server.py [--latency 0.2]

Prints ``URL <openai base url>`` and serves until stdin closes.  What it answers is decided per
request from the first user message (``BENCH <kind> n=<N> side=<ours|theirs>``, see _common.prompt)
and the number of ``tool`` messages already in the conversation, so runs of both products get the
same replies whatever their system prompts:

- ``noop``/``exec``: N turns calling the tool ``noop`` / ``execute_code``, then the text "done";
- ``batch``: one ``rlm_batch_complete`` call with N sub-queries (``SUB i``, in each side's argument
  shape: strings for ours, ``{"query": ..}`` objects for theirs) and max_parallel N, then "done";
- a conversation whose first user message starts with ``SUB``: the text "ok".
"""

from __future__ import annotations

import argparse
import re
import sys

from rlm_testing.server import Reply, ScriptedLLMServer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import EXEC_CODE  # noqa: E402

PATTERN = re.compile(r"BENCH (\w+) n=(\d+) side=(\w+)")
# an "error" key with a value other than None/null, or a traceback, in a tool result
FAILED = re.compile(r"""['"]error['"]\s*:(?!\s*(?:None|null))|Traceback""")


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def answer(req):
    messages = req.body.get("messages") or []
    users = [_text(m) for m in messages if m.get("role") == "user"]
    first = users[0] if users else ""
    if "SUB " in first and "BENCH" not in first:
        return Reply.text("ok")
    match = PATTERN.search(first)
    if not match:
        return Reply.error(400, f"bench server: no BENCH marker in {first[:80]!r}")
    kind, n, side = match.group(1), int(match.group(2)), match.group(3)
    tool_msgs = [_text(m) for m in messages if m.get("role") == "tool"]
    done = len(tool_msgs)
    # validate the work: a failed tool makes the run answer something other than "done"
    if tool_msgs and (FAILED.search(tool_msgs[-1]) or tool_msgs[-1].lstrip().lower().startswith("error")):
        return Reply.text("TOOL FAILED: " + tool_msgs[-1][:300])
    if kind == "exec" and tool_msgs and "4950" not in tool_msgs[-1]:
        return Reply.text("EXEC OUTPUT MISSING: " + tool_msgs[-1][:300])
    if kind == "batch" and tool_msgs and tool_msgs[-1].count("ok") < n:
        return Reply.text(f"BATCH INCOMPLETE ({tool_msgs[-1].count('ok')} ok): " + tool_msgs[-1][:300])
    if kind == "batch":
        if done:
            return Reply.text("done")
        queries = [f"SUB {i}" for i in range(n)]
        if side == "theirs":
            queries = [{"query": q} for q in queries]
        return Reply.tool_calls(("rlm_batch_complete", {"queries": queries, "max_parallel": n}))
    if done >= n:
        return Reply.text("done")
    if kind == "noop":
        return Reply.tool_calls(("noop", {}))
    return Reply.tool_calls(("execute_code", {"code": EXEC_CODE}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with ScriptedLLMServer(answer, latency=args.latency) as server:
        print("URL", server.openai_base_url, flush=True)
        sys.stdin.read()
        if server.errors:
            print("script errors:", server.errors, file=sys.stderr)


if __name__ == "__main__":
    main()
