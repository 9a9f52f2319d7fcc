"""rlm-viz: ``rlm visualize``, a Streamlit dashboard over the JSONL trajectories of rlm runs.

The data layer (:mod:`rlm_viz.reader`, :mod:`rlm_viz.model`, :mod:`rlm_viz.runs`,
:mod:`rlm_viz.stats`) is plain Python with no Streamlit import; :mod:`rlm_viz.app`
is the Streamlit script and :mod:`rlm_viz.cli` the command that starts it.
"""

__version__ = "0.1.0"
