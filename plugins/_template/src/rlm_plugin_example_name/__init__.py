"""rlm-plugin-example-name: an example rlm plugin (copy ``plugins/_template`` to start yours).

The hook implementations live in :mod:`rlm_plugin_example_name.plugin`, the
module the ``rlm`` entry point names.  Keep this package's import cheap.
"""

__version__ = "0.1.0"
