"""``python -m training``: train, gate on accuracy, export the next model version."""

from training.cli import main

raise SystemExit(main())
