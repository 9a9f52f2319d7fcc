"""The kernel's CLI commands, one module each, imported only when run."""
