"""``python -m gateway``: the development server. Production runs gunicorn."""

from gateway.app import create_app
from gateway.config import Config


def main() -> None:
    config = Config.from_env()
    create_app(config).run(host="127.0.0.1", port=config.port, threaded=True)


if __name__ == "__main__":
    main()
