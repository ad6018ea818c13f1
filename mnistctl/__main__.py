"""``python -m mnistctl``, the same as the ``mnistctl`` console script."""

from mnistctl.cli import entry

entry()
