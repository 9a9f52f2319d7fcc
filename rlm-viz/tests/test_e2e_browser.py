"""End to end: ``rlm visualize --dir <fixtures> --port <free>`` as a subprocess, rendered by headless Chromium.

Needs the ``chromium`` package (``scripts/ci-viz-deps.sh``); skipped without it.
One Chromium session, driven over the DevTools protocol (:mod:`rlm_viz.browser`), opens the
dashboard and polls its live DOM until the run shows or :data:`DEADLINE_S` passes: Streamlit
renders over a websocket after the page has loaded, and its first script run in a fresh server
imports pandas and Altair, so a one-shot ``--dump-dom`` (whose virtual time budget runs out
whatever the server's pace) could dump the page before the run arrived on a loaded machine.
The screenshot is kept at ``$RLM_VIZ_SCREENSHOT`` (default: the test's tmp dir)
and its path printed.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

pytest.importorskip("streamlit")

from rlm_viz.browser import Chromium, dashboard, find_chromium, free_port

CHROMIUM = find_chromium()
#: how long the page gets to show the run (it takes seconds; this only bounds a broken page)
DEADLINE_S = 120

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run scripts/ci-viz-deps.sh")]


def test_dashboard_renders_the_run_in_chromium(log_dir, tmp_path, traj):
    port = free_port()
    rlm = shutil.which("rlm", path=os.path.dirname(sys.executable)) or "rlm"
    err_path = tmp_path / "visualize.err"
    with dashboard([rlm, "visualize", "--dir", str(log_dir), "--port", str(port)], port, str(err_path)) as url:
        with Chromium(CHROMIUM, profile=str(tmp_path / "profile")) as page:
            page.open(url)
            # the run is shown and the script run is over (Streamlit's "running" indicator gone)
            page.wait_for(lambda d: traj.FAILED_TASK in d and "HTTP 500 from provider" in d
                          and traj.TASK in d and not page.running(), DEADLINE_S)
            dom = page.html()
            assert traj.FAILED_TASK in dom, dom[-2000:]
            assert traj.TASK in dom  # the other run, in the picker's table
            assert "HTTP 500 from provider" in dom  # the error, highlighted
            shot = os.environ.get("RLM_VIZ_SCREENSHOT") or str(tmp_path / "dashboard.png")
            page.screenshot(shot)
        assert os.path.getsize(shot) > 10_000
        print(f"screenshot: {shot}")
    err = err_path.read_text()
    assert f"http://127.0.0.1:{port}" in err and str(log_dir) in err  # the URL is printed on stderr
