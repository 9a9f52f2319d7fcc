"""Default system prompts and the messages the orchestrator adds itself."""

from __future__ import annotations

from collections.abc import Iterable

from rlm.types import ToolSpec

TOOLS_SYSTEM = """\
You are a Recursive Language Model: you solve the user's task by reasoning, running Python and \
delegating focused sub-problems.

Tools:
{tool_lines}

How to work:
- Python runs in a persistent sandboxed REPL: variables, functions and imports stay between calls. \
print() what you need to see; the value of a last expression is shown.
- Delegate independent or large sub-problems with rlm_sub_complete (one) or rlm_batch_complete (several \
in parallel); each runs with a fresh context and part of your remaining budget.
- When you are done, answer in plain text without calling a tool."""

REPL_SYSTEM = """\
You answer the user's task by writing Python code that a REPL runs for you.

{context_line}Files named in the task are in the current directory: read them with open().
Only the Python standard library is available (csv, json, re, math, statistics, collections, datetime); \
pandas and numpy are not.
To run code, write one block that starts with ```repl and ends with ```, then stop: the next message \
shows what the code printed. Variables persist between blocks. Never write the output yourself.
If the code fails, read the error and write different code.
When your code has computed the answer, call FINAL(value) in the code, or reply with FINAL(answer) or \
FINAL_VAR(variable_name) on its own line.
{sub_calls}{examples}"""

FORCED_ANSWER = (
    "{message}. Do not call tools or write code any more: answer now with the best answer you have "
    "from the work so far."
)

FORCED_ANSWER_REPL = (
    "{message}. Do not write code any more: answer now with the best answer you have, as FINAL(answer)."
)

REPL_NUDGE = (
    "Continue: write a ```repl block to run code, or give the answer as FINAL(answer) "
    "or FINAL_VAR(variable_name)."
)

#: Added to the feedback of code that did not compile and calls FINAL: small models write the answer there
#: unquoted (``FINAL(1a2b-3c4d)``), which is not Python; the note quotes their own value back (an
#: example value of ours would be copied as the answer).
FINAL_IN_CODE = (
    "Note: in code, FINAL takes a Python value: write FINAL({quoted}), with quotes, or reply with "
    "FINAL({value}) on its own line outside code."
)

#: The nudge after a short plain reply (one line) to a turn that ran code: a small model answers in
#: plain text once the output shows the answer, and turns back to code when told only to use FINAL.
REPL_NUDGE_REPLY = (
    "Your reply has no ```repl block and no FINAL. If {reply!r} is your answer, reply with FINAL({reply}). "
    "If it is not, write a ```repl block to run code."
)

JSON_REPAIR = (
    "Your answer is not valid for the required JSON Schema: {reason}. "
    "Answer again with only the JSON value, nothing else."
)

SUB_CALL_SYSTEM = (
    "You are a sub-call of a Recursive Language Model: answer the focused query you are given, "
    "concisely and completely, using tools if that helps."
)

LLM_QUERY_SYSTEM = "Answer the request concisely and accurately."

#: The system prompt of the direct path (an input under ``direct_below_tokens``: one plain call).
DIRECT_SYSTEM = "Answer the request accurately, using the context given with it."


def tool_lines(tools: Iterable[ToolSpec]) -> str:
    return "\n".join(f"- {t.name}: {t.description.splitlines()[0] if t.description else ''}" for t in tools)


def tools_system(tools: Iterable[ToolSpec]) -> str:
    return TOOLS_SYSTEM.format(tool_lines=tool_lines(tools))


#: The REPL prompt's examples when the input is the task itself or files it names.
REPL_FILE_EXAMPLES = """\
Example, for the task "What is the total of the amount column in orders.csv?":
```repl
import csv
with open("orders.csv", newline="") as f:
    rows = list(csv.DictReader(f))  # one dict per data row; the header gives the keys
total = sum(float(row["amount"]) for row in rows)
print(len(rows), "rows, total", total)
FINAL(round(total, 2))
```
Example, for the task "How many lines does server.log have, and how many mention timeout?" (lines are \
counted in the text; in a csv file the header is a line too):
```repl
with open("server.log") as f:
    lines = f.read().splitlines()
FINAL(f"{len(lines)} lines, {sum(1 for line in lines if 'timeout' in line)} mention timeout")
```"""

#: The REPL prompt's example when the input is in ``context`` (instead of the file examples, which
#: small models copy whole): without it they answer a question about ``context`` without looking at it.
REPL_CONTEXT_EXAMPLE = """\
The task is about the text in `context`, which you have not seen: never answer before your code has found \
the answer there. Find the parts that matter with code (str methods, re, slicing; for a search, the task's \
own distinctive words) and print them; when what was printed shows the answer, reply with FINAL(answer).
Example, for the task "According to the context, what colour was the bridge over the river painted? Answer \
with the colour only.":
```repl
import re
for m in list(re.finditer(r"bridge over the river", context, re.IGNORECASE))[:10]:
    print("...", context[max(0, m.start() - 200):m.end() + 200].replace("\\n", " "), "...")
```
Example, for the task "Which city did Dana Reyes move to, according to the context? Answer with the city only.":
```repl
import re
for m in list(re.finditer(r"Dana Reyes", context, re.IGNORECASE))[:10]:
    print("...", context[max(0, m.start() - 200):m.end() + 200].replace("\\n", " "), "...")
```
"""

#: The REPL prompt's lines on delegation (left out when sub-calls are off).
REPL_SUB_CALLS = """\
For long text, code may also call llm_query(prompt), which returns a sub-LLM's answer as a string (it \
sees only what you pass), and llm_query_batched(prompts), which returns a list of answers.
"""


def repl_system(context_desc: str | None, *, sub_calls: bool = True) -> str:
    """The repl protocol's system prompt; ``context_desc`` None: the REPL variable ``context`` is not
    mentioned (it holds only the task, shown whole: small models otherwise parse it for the data)."""
    line = "" if context_desc is None else f"The REPL variable `context` holds the input ({context_desc}). "
    return (REPL_SYSTEM.replace("{context_line}", line)
            .replace("{sub_calls}", REPL_SUB_CALLS if sub_calls else "")
            .replace("{examples}", REPL_FILE_EXAMPLES if context_desc is None else REPL_CONTEXT_EXAMPLE))


#: Appended to the REPL feedback when the model ran the same code again and it failed again.
REPEATED_FAILURE = (
    "Note: this is the same code as before, and it failed again with: {error}\n"
    "Do not run it again: try a different approach, e.g. inspect the data first (print its type, its "
    "length and a few lines of it), or use only the standard library."
)

#: Appended to the REPL feedback when the model ran the same code again and it printed the same.
REPEATED_OUTPUT = (
    "Note: this is the same code as before, and it printed the same output again. Running it once more "
    "will not help: use what it printed, try something different, or give the answer as FINAL(answer)."
)
