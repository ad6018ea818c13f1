"""``python -m gateway``: the development server. Production runs gunicorn."""

from gateway.config import Config
from gateway.services import close_services
from gateway.web.app import create_app


def main() -> None:
    config = Config.from_env()
    app = create_app(config)
    try:
        app.run(host="127.0.0.1", port=config.port, threaded=True)
    finally:
        close_services(app)


if __name__ == "__main__":
    main()
