"""``rlm visualize``: start the Streamlit dashboard on 127.0.0.1 over a trajectory directory.

The directory reaches the app twice over: as ``--dir`` after ``--`` on the
``streamlit run`` command line and as ``RLM_VIZ_DIR`` in its environment
(:func:`rlm_viz.app.log_dir` reads argv first).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from typing import Annotated, Any

from cyclopts import Parameter
from rlm.errors import PluginError
from rlm.logging import get_logger

log = get_logger(__name__)

ENV_DIR = "RLM_VIZ_DIR"
PIP_HINT = 'pip install "streamlit>=1.37,<2"  (or: pip install rlm-viz)'


def app_path() -> str:
    """The file of the Streamlit script."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")


def streamlit_command(directory: str, port: int) -> list[str]:
    """The argv that runs the dashboard over ``directory`` on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "streamlit", "run", app_path(),
            "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer",  # no Deploy button, no developer menu
            "--", "--dir", directory]


def _default_dir() -> str:
    try:
        from rlm.cli import plugin_manager
        from rlm.config import load_config
        from rlm.registry import collect

        sections: dict[str, Any] = {name: reg.load() for name, reg in
                                    collect(plugin_manager(), "config_section", strict=False).items()}
        return load_config(sections=sections).log_dir
    except Exception as exc:  # noqa: BLE001 - a broken rlm.toml must not stop the viewer
        log.warning("visualize_config_unreadable", error=str(exc))
        return "logs"


def visualize(
    *,
    log_dir: Annotated[str | None, Parameter(name=["--dir", "-d"])] = None,
    port: Annotated[int, Parameter(name=["--port", "-p"])] = 8502,
) -> int:
    """Open the trajectory dashboard: run picker, execution tree, token, time, tool and cost charts.

    Parameters
    ----------
    log_dir: str
        Directory of the JSONL trajectories (default from rlm.toml, else ./logs).
    port: int
        Port on 127.0.0.1 to serve on.
    """
    if importlib.util.find_spec("streamlit") is None:
        raise PluginError("rlm visualize needs Streamlit, which is not installed", fix=PIP_HINT)
    from rlm_viz.runs import check_dir

    directory = os.path.abspath(check_dir(log_dir or _default_dir()))
    env = dict(os.environ, **{ENV_DIR: directory})
    print(f"rlm visualize: trajectories in {directory}\n  open http://127.0.0.1:{port}  (Ctrl-C stops)",
          file=sys.stderr, flush=True)
    proc = subprocess.Popen(streamlit_command(directory, port), env=env)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a terminated `rlm visualize` stops Streamlit too
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
