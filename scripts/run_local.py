"""`make run`: the whole stack on one machine.

Trains a quick model first when MODEL_DIR has no version, then serves the gateway with
gunicorn, the in-process model and the embedded SQLite store. CASSANDRA_HOSTS and
SERVING_URL switch to those backends, exactly as in the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.config import Config
from gateway.server.gunicorn_conf import GUNICORN_CONFIG
from mnist_contract import available_versions

# A first model in a minute or two on a laptop CPU; `python -m training` with its
# defaults trains the full-quality one.
FIRST_MODEL_ARGS = ("--epochs", "2")


def train_first_model(model_dir: Path) -> None:
    print(f"No model in {model_dir}: training a first one (progress below).", flush=True)
    command = [sys.executable, "-m", "training", "--export-dir", str(model_dir), *FIRST_MODEL_ARGS]
    subprocess.run(command, check=True)


def main() -> None:
    config = Config.from_env()
    if not config.uses_tf_serving and not available_versions(config.model_dir):
        train_first_model(config.model_dir)

    port = config.port
    print(f"Serving the gateway on http://127.0.0.1:{port}  (Ctrl-C stops it)", flush=True)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    os.execv(
        gunicorn,
        [
            str(gunicorn),
            "--config",
            GUNICORN_CONFIG,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "gateway:create_app()",
        ],
    )


if __name__ == "__main__":
    main()
