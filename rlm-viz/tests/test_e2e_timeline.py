"""End to end, issue 25: a generated 1,000-call trajectory in ``rlm visualize``, rendered by headless
Chromium and checked on the live page: the timeline's turns ("Turn 1 of 21", the next button and the
→ key), an ERR badge reached from the error list, the error summary one line, no Deploy button, and
charts of bounded height.  Screenshots are kept under ``$RLM_VIZ_SCREENSHOT_DIR`` (default: the test's
tmp dir) and their paths printed.

Needs the ``chromium`` package (``scripts/ci-viz-deps.sh``); skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest

pytest.importorskip("streamlit")

from rlm_viz.browser import Chromium, dashboard, find_chromium, free_port

CHROMIUM = find_chromium()
#: how long the page gets to show a state (it takes seconds; this only bounds a broken page)
DEADLINE_S = 120
TID = "20990101-000000-many0000"
#: the tallest a chart may be (the app's CHART_MAX_PX, plus Vega's axis and legend padding)
MAX_CHART_PX = 520

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run scripts/ci-viz-deps.sh")]


def click(page: Chromium, text: str, selector: str = "button") -> None:
    """Click the first enabled ``selector`` whose text starts with ``text`` (a shortcut hint may follow)."""
    found = page.evaluate(f"""(() => {{
        const el = [...document.querySelectorAll({json.dumps(selector)})]
            .find(e => e.innerText.trim().startsWith({json.dumps(text)}) && !e.disabled);
        if (el) {{ el.scrollIntoView(); el.click(); }}
        return !!el; }})()""")
    assert found, f"no {selector} {text!r} on the page"


def settled(page: Chromium, needle: str):
    return lambda d: needle in d and "stSkeleton" not in d and not page.running()


def text(page: Chromium) -> str:
    return page.evaluate("document.body.innerText") or ""


@pytest.fixture
def served(tmp_path, traj):
    logs = tmp_path / "logs"
    logs.mkdir()
    traj.write(logs / f"{TID}.jsonl", traj.many_calls_run(TID, 1000, ts=time.time() - 600))
    port = free_port()
    rlm = shutil.which("rlm", path=os.path.dirname(sys.executable)) or "rlm"
    # 2.x's short flags on purpose (`rlm visualize -d DIR -p PORT`); test_e2e_browser uses the long ones
    with dashboard([rlm, "visualize", "-d", str(logs), "-p", str(port)], port,
                   str(tmp_path / "visualize.err")) as url:
        yield url


def shot(page: Chromium, tmp_path, name: str) -> str:
    path = os.path.join(os.environ.get("RLM_VIZ_SCREENSHOT_DIR") or str(tmp_path), name)
    page.screenshot(path)
    assert os.path.getsize(path) > 10_000
    print(f"screenshot: {path}")
    return path


def test_a_thousand_call_run_reads_well_in_chromium(served, tmp_path):
    with Chromium(CHROMIUM, profile=str(tmp_path / "profile")) as page:
        page.open(served)
        ok, dom = page.wait_for(settled(page, "Turn 1 of 21"), DEADLINE_S)
        assert ok, dom[-3000:]
        body = text(page)
        assert "21 turns · ERR in turn 7 · FINAL in turn 21" in body
        assert "50 sub-calls spawned here" in body and "llm_query q2 · “Classify this ticket: #2" in body
        # no Deploy button, no developer menu
        assert page.evaluate("document.querySelector('[data-testid=\"stAppDeployButton\"]') === null")
        assert "Deploy" not in body
        # the errors: one summary line (11 errors) with its jump link, before the timeline
        alert = page.evaluate("""(() => {
            const a = [...document.querySelectorAll('[data-testid="stAlert"]')]
                .filter(e => e.querySelector('a[href$="#errors"]'));
            if (a.length !== 1) return {count: a.length};
            const p = a[0].querySelector('p');
            return {count: 1, text: p.innerText,
                    lines: p.getBoundingClientRect().height / parseFloat(getComputedStyle(p).lineHeight)};
        })()""")
        assert alert["count"] == 1 and alert["text"].count("\n") == 0, alert
        assert "11 errors" in alert["text"] and alert["lines"] < 1.5, alert
        shot(page, tmp_path, "timeline-turn-1.png")
        # charts: the open tab (Tokens: top 15 and the others, and a histogram), bounded heights
        page.evaluate("document.querySelector('[role=\"tab\"]').scrollIntoView()")
        ok, _ = page.wait_for(lambda d: d.count('data-testid="stVegaLiteChart"') >= 2, DEADLINE_S)
        assert ok, "the charts did not render"
        heights = page.evaluate("[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
                                ".map(e => e.getBoundingClientRect().height)")
        assert len(heights) == 2 and all(0 < h <= MAX_CHART_PX for h in heights), heights
        shot(page, tmp_path, "charts-tokens.png")

        # step through: the next button, then the → key
        click(page, "next ▶")
        ok, dom = page.wait_for(settled(page, "Turn 2 of 21"), DEADLINE_S)
        assert ok, dom[-3000:]
        for kind in ("keyDown", "keyUp"):
            page.call("Input.dispatchKeyEvent", type=kind, key="ArrowRight", code="ArrowRight",
                      windowsVirtualKeyCode=39, nativeVirtualKeyCode=39)
        ok, dom = page.wait_for(settled(page, "Turn 3 of 21"), DEADLINE_S)
        assert ok, "the → key did not step to turn 3"

        # the error list's button shows the failing sub-call in the timeline, with its ERR badge
        click(page, "show in the timeline")
        ok, dom = page.wait_for(settled(page, "↑ run c0"), DEADLINE_S)
        assert ok, dom[-3000:]
        turn = page.evaluate("""(() => {
            const p = [...document.querySelectorAll('p')].find(e => e.innerText.startsWith('Turn 1 of 1'));
            return p ? p.innerText : null; })()""")
        assert turn is not None and "ERR" in turn, turn
        assert "llm_query q97" in text(page)
        page.evaluate("window.scrollTo(0, 0); document.querySelector('[data-testid=\"stMain\"]')?.scrollTo(0, 0)")
        shot(page, tmp_path, "timeline-error.png")

        # the Durations tab: per-call time (top 15 and the others) and a histogram, bounded too
        click(page, "Durations", '[role="tab"]')
        ok, _ = page.wait_for(lambda d: "Calls by duration" in d and not page.running(), DEADLINE_S)
        assert ok
        ok, _ = page.wait_for(lambda d: d.count('data-testid="stVegaLiteChart"') >= 3, DEADLINE_S)
        assert ok, "the Durations charts did not render"
        heights = page.evaluate("[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
                                ".map(e => e.getBoundingClientRect().height)")
        assert len(heights) >= 3 and all(0 < h <= MAX_CHART_PX for h in heights), heights
        page.evaluate("[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')].pop().scrollIntoView()")
        shot(page, tmp_path, "charts-durations.png")
