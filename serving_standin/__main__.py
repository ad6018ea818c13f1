"""``python -m serving_standin``: the stand-in with ``tensorflow_model_server``'s flags."""

from serving_standin.cli import main

raise SystemExit(main())
