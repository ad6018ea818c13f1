"""The upload page. It is static; the browser talks to the JSON API."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("ui", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")
