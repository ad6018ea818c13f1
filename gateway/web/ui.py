"""The page: static HTML, CSS and JavaScript; the browser talks to the JSON API."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

bp = Blueprint("ui", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers and tools ask for /favicon.ico whatever the page links: the same icon."""
    return current_app.send_static_file("favicon.svg")
