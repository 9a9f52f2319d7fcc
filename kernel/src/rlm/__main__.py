"""``python -m rlm``: the same as the ``rlm`` script."""

from rlm.cli import run

if __name__ == "__main__":
    run()
