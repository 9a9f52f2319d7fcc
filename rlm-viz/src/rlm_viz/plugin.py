"""The hook implementations of rlm-viz (imported on every ``rlm`` run: keep it cheap, no Streamlit)."""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_commands(register):
    register("visualize", "rlm_viz.cli:visualize",
             help="Open the trajectory dashboard (Streamlit) over a log directory.")
