"""The kernel's own plugins (see :data:`rlm.plugins.DEFAULT_PLUGINS`)."""
