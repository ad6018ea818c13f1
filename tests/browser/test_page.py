"""The page in a real headless Chromium: drawing, uploads, feedback, history, stats.

The gateway serves the real exported model and a SQLite store on 127.0.0.1. Every view
and state is checked for console errors, failed requests, horizontal overflow and axe-core
violations; screenshots go to .cache/screenshots/ (CI keeps them as artifacts).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from selenium.webdriver import Chrome
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from gateway.config import Config
from gateway.web.app import create_app
from tests.support import browser
from tests.support.http import serve, wait_until_ready
from tests.support.images import paper_photo
from tests.support.waiting import wait_until

DESKTOP = (1280, 900)
PHONE = (390, 844)
UPLOAD_LIMIT = 2 * 1024 * 1024

# Strokes in the pad's own unit square (0,0 top left), as a person draws these digits.
STROKES = {
    7: [[(0.28, 0.22), (0.5, 0.22), (0.72, 0.22), (0.62, 0.45), (0.52, 0.65), (0.45, 0.82)]],
    1: [[(0.5, 0.18), (0.5, 0.4), (0.5, 0.6), (0.5, 0.82)]],
    0: [[(0.5 + 0.2 * np.sin(t), 0.5 - 0.3 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 24)]],
}


@pytest.fixture(scope="module")
def gateway(exported_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = browser.missing_tools()
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run the browser tests through `make test` or "
            "`make test-browser`, which install them",
            pytrace=False,
        )
    config = Config(
        model_dir=exported_model_dir,
        sqlite_path=tmp_path_factory.mktemp("store") / "predictions.sqlite3",
        max_upload_bytes=UPLOAD_LIMIT,
        log_level="WARNING",
    )
    with serve(create_app(config)) as url:
        wait_until_ready(url)
        yield url


@pytest.fixture(scope="module")
def desktop() -> Iterator[Chrome]:
    with browser.chromium(*DESKTOP) as driver:
        yield driver


@pytest.fixture(scope="module")
def phone() -> Iterator[Chrome]:
    with browser.chromium(*PHONE, touch=True) as driver:
        yield driver


def open_page(driver: Chrome, url: str) -> None:
    driver.get(url)
    wait_until(
        lambda: driver.execute_script("return document.readyState") == "complete",
        timeout=30,
        what="the page to load",
    )


def check_clean(driver: Chrome, state: str) -> None:
    """What must hold in every view and state: no overflow, no errors, axe finds nothing."""
    assert browser.horizontal_overflow(driver) == 0, f"{state}: the page scrolls sideways"
    assert browser.console_errors(driver) == [], state
    assert browser.failed_requests(driver) == [], state
    assert browser.axe_violations(driver) == [], state


def pad_points(driver: Chrome, stroke: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """A stroke in unit coordinates as offsets from the pad's centre, in CSS pixels."""
    pad = driver.find_element(By.ID, "pad")
    size = pad.size
    return [
        (round((x - 0.5) * size["width"]), round((y - 0.5) * size["height"])) for x, y in stroke
    ]


def draw_with_mouse(driver: Chrome, digit: int) -> None:
    pad = driver.find_element(By.ID, "pad")
    for stroke in STROKES[digit]:
        points = pad_points(driver, stroke)
        chain = ActionChains(driver, duration=10)
        chain.move_to_element_with_offset(pad, *points[0]).click_and_hold()
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            chain.move_by_offset(x1 - x0, y1 - y0)
        chain.release().perform()


def draw_with_finger(driver: Chrome, digit: int) -> None:
    pad = driver.find_element(By.ID, "pad")
    for stroke in STROKES[digit]:
        points = pad_points(driver, stroke)
        actions = ActionBuilder(
            driver, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"), duration=10
        )
        finger = actions.pointer_action
        finger.move_to(pad, *points[0]).pointer_down()
        for x, y in points[1:]:
            finger.move_to(pad, x, y)
        finger.pointer_up()
        actions.perform()


def record_states(driver: Chrome) -> None:
    """Keep every (aria-busy, status class, status text) the result card goes through."""
    driver.execute_script(
        "window.__states = [];"
        "const card = document.getElementById('result-card');"
        "const status = document.getElementById('status');"
        "const note = () => window.__states.push("
        "  [card.getAttribute('aria-busy'), status.className, status.textContent]);"
        "new MutationObserver(note).observe(card, {attributes: true, childList: true,"
        "  characterData: true, subtree: true});"
    )


def recorded_states(driver: Chrome) -> list[list[str]]:
    return driver.execute_script("return window.__states;")


def wait_for_answer(driver: Chrome) -> str:
    def answered() -> str | None:
        if driver.find_element(By.ID, "error").is_displayed():
            raise AssertionError(driver.find_element(By.ID, "error").text)
        if driver.find_element(By.ID, "result").is_displayed():
            return driver.find_element(By.ID, "answer-digit").text
        return None

    digit = wait_until(answered, timeout=60, what="the answer")
    model_input = driver.find_element(By.ID, "model-input")
    wait_until(
        lambda: image_width(driver, model_input) == 28,
        timeout=30,
        what="the 28x28 input the model saw",
    )
    return digit


def image_width(driver: Chrome, image: object) -> int:
    """The natural width of a loaded image, 0 while it is not loaded."""
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)


def stats_shown(status: str) -> bool:
    """The stats view's status once the numbers are in: "12 predictions from ... to ..."."""
    return re.match(r"\d+ predictions? from ", status) is not None


def wait_for_error(driver: Chrome) -> str:
    error = driver.find_element(By.ID, "error")
    wait_until(error.is_displayed, timeout=60, what="an error message")
    return error.text


def test_drawn_digits_are_read_and_shown_with_what_the_model_saw(gateway, desktop):
    open_page(desktop, gateway)
    check_clean(desktop, "desktop, empty")
    browser.screenshot(desktop, "after-desktop-empty")

    for digit in (7, 0, 1):
        desktop.find_element(By.ID, "pad-clear").click()
        draw_with_mouse(desktop, digit)
        record_states(desktop)
        desktop.find_element(By.ID, "pad-send").click()

        assert wait_for_answer(desktop) == str(digit)
        # While the request ran: a busy result card, a spinner, a status that says so.
        assert ["true", "status busy", "Reading your drawing…"] in recorded_states(desktop)
        status = desktop.find_element(By.ID, "status")
        assert status.get_attribute("role") == "status"
        assert status.text == f"The model reads {digit}."
        bars = desktop.find_elements(By.CSS_SELECTOR, "#probabilities li")
        assert len(bars) == 10
        assert "top" in bars[digit].get_attribute("class")
    check_clean(desktop, "desktop, a drawing read")
    browser.screenshot(desktop, "after-desktop-result")


def test_a_blank_pad_says_so_and_shows_no_old_result(gateway, desktop):
    open_page(desktop, gateway)
    draw_with_mouse(desktop, 1)
    desktop.find_element(By.ID, "pad-send").click()
    wait_for_answer(desktop)

    desktop.find_element(By.ID, "pad-clear").click()
    desktop.find_element(By.ID, "pad-send").click()

    assert "drawing pad is empty" in wait_for_error(desktop)
    assert not desktop.find_element(By.ID, "result").is_displayed()
    check_clean(desktop, "desktop, blank pad")

    # The next success replaces the error: one current state at a time.
    draw_with_mouse(desktop, 1)
    desktop.find_element(By.ID, "pad-send").click()
    wait_for_answer(desktop)
    assert not desktop.find_element(By.ID, "error").is_displayed()


def test_uploads_are_read_and_errors_are_plain_words(gateway, desktop, tmp_path, mnist_test_set):
    images, labels = mnist_test_set
    open_page(desktop, gateway)
    long_name = "a" * 251 + ".jpg"
    photo = tmp_path / long_name
    photo.write_bytes(paper_photo(images[0]))

    desktop.find_element(By.ID, "file-input").send_keys(str(photo))

    digit = wait_for_answer(desktop)
    stored = requests.get(gateway + "/api/v1/predictions?limit=1", timeout=10).json()
    assert stored["predictions"][0]["filename"] == long_name
    assert digit == str(stored["predictions"][0]["digit"])
    assert digit == str(labels[0])
    check_clean(desktop, "desktop, an upload with a 255-character name")

    too_big = tmp_path / "huge.png"
    too_big.write_bytes(b"\0" * (UPLOAD_LIMIT + 1))
    desktop.find_element(By.ID, "file-input").send_keys(str(too_big))
    message = wait_for_error(desktop)
    assert message.startswith("That file is too big: the upload is larger than the 2 MB limit.")
    assert not desktop.find_element(By.ID, "result").is_displayed()

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"these are words, not pixels")
    desktop.find_element(By.ID, "file-input").send_keys(str(not_an_image))
    wait_until(
        lambda: "kind of file is not supported" in desktop.find_element(By.ID, "error").text,
        timeout=60,
        what="the unsupported-file message",
    )
    check_clean(desktop, "desktop, an upload refused")
    browser.screenshot(desktop, "after-desktop-error")


def test_feedback_is_confirmed_marked_and_changeable(gateway, desktop):
    open_page(desktop, gateway)
    draw_with_mouse(desktop, 7)
    desktop.find_element(By.ID, "pad-send").click()
    digit = int(wait_for_answer(desktop))
    buttons = desktop.find_elements(By.CSS_SELECTOR, "#feedback-buttons button")
    assert [b.accessible_name for b in buttons] == [f"It is a {d}" for d in range(10)]

    buttons[digit].click()
    status = desktop.find_element(By.ID, "feedback-status")
    wait_until(lambda: status.text.startswith("Thanks"), timeout=30, what="the confirmation")
    assert status.text == f"Thanks: saved as {digit} (the model was right)."
    assert [b.get_attribute("aria-pressed") for b in buttons] == [
        str(d == digit).lower() for d in range(10)
    ]

    other = (digit + 3) % 10
    buttons[other].click()
    wait_until(lambda: status.text.startswith("Changed"), timeout=30, what="the change")
    assert status.text == f"Changed from {digit} to {other} (the model was wrong)."
    assert buttons[other].get_attribute("aria-pressed") == "true"
    assert buttons[digit].get_attribute("aria-pressed") == "false"

    newest = desktop.find_element(By.CSS_SELECTOR, "#history li")
    wait_until(
        lambda: "mismatch" in newest.get_attribute("class"), timeout=30, what="the mismatch mark"
    )
    assert f"really {other}" in newest.text
    check_clean(desktop, "desktop, feedback changed")
    browser.screenshot(desktop, "after-desktop-feedback")


def test_history_pages_with_thumbnails(gateway, desktop, mnist_test_set):
    images, _ = mnist_test_set
    for index in range(14):
        files = {"file": (f"digit-{index}.jpg", paper_photo(images[20 + index]))}
        assert requests.post(gateway + "/api/v1/predictions", files=files, timeout=60).ok
    open_page(desktop, gateway)
    history = desktop.find_element(By.ID, "history")
    wait_until(
        lambda: len(history.find_elements(By.TAG_NAME, "li")) == 12, timeout=30, what="page 1"
    )

    desktop.find_element(By.ID, "more").click()

    wait_until(
        lambda: len(history.find_elements(By.TAG_NAME, "li")) > 12, timeout=30, what="page 2"
    )
    ids = [li.get_attribute("data-id") for li in history.find_elements(By.TAG_NAME, "li")]
    assert len(ids) == len(set(ids))
    thumbnails = history.find_elements(By.TAG_NAME, "img")
    desktop.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    wait_until(
        lambda: all(image_width(desktop, img) == 28 for img in thumbnails),
        timeout=30,
        what="every thumbnail",
    )
    check_clean(desktop, "desktop, history paged")


def test_stats_view_shows_pictures_of_how_it_is_doing(gateway, desktop):
    open_page(desktop, gateway)
    desktop.find_element(By.ID, "nav-stats").click()

    status = desktop.find_element(By.ID, "stats-status")
    wait_until(lambda: stats_shown(status.text), timeout=30, what="the stats")
    stats = requests.get(gateway + "/api/v1/stats", timeout=10).json()
    tiles = desktop.find_elements(By.CSS_SELECTOR, "#stats-tiles .tile")
    assert tiles[0].text.split("\n")[0] == str(stats["predictions"])
    for chart in ("chart-time", "chart-digits", "chart-latency"):
        svg = desktop.find_element(By.CSS_SELECTOR, f"#{chart} svg")
        assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label")
    assert len(desktop.find_elements(By.CSS_SELECTOR, "#chart-confusion tbody tr")) == 10
    models = desktop.find_element(By.ID, "chart-models").text
    assert models.startswith("mnist version 1")
    # Each version with the feedback on its own answers.
    first = stats["model_versions"][0]
    assert (
        f"{first['accuracy'] * 100:.1f}% right, of {first['labelled']} with feedback"
        if first["labelled"]
        else "No feedback on its answers yet."
    ) in models
    assert desktop.find_element(By.ID, "nav-stats").get_attribute("aria-current") == "page"
    check_clean(desktop, "desktop, stats")
    browser.screenshot(desktop, "after-desktop-stats")

    # Chosen as one change: typing the option's text relies on the select's type-ahead,
    # which starts over after a second between keys on a busy machine.
    Select(desktop.find_element(By.ID, "stats-days")).select_by_visible_text("Last 24 hours")
    # The status already reads "shown" for the 30 days: wait for the day's chart itself
    # (one bar per hour), which replaces the 30 daily bars once the day's stats arrive.
    hourly = wait_until(
        lambda: len(desktop.find_elements(By.CSS_SELECTOR, "#chart-time svg rect")) == 24,
        timeout=30,
        what="the day's chart of 24 hourly bars",
    )
    assert hourly and stats_shown(status.text)
    check_clean(desktop, "desktop, stats of a day")


def test_keyboard_reaches_everything_with_a_visible_focus(gateway, desktop):
    open_page(desktop, gateway)
    seen = {}
    for _ in range(12):
        ActionChains(desktop).send_keys(Keys.TAB).perform()
        active = desktop.switch_to.active_element
        key = active.get_attribute("id") or active.text
        # The focused control, or for the hidden file input its drop zone, shows a ring.
        ring = desktop.execute_script(
            "const e = document.activeElement;"
            "const shown = e.id === 'file-input' ? document.getElementById('drop-zone') : e;"
            "return getComputedStyle(shown).boxShadow;",
        )
        seen[key] = ring
    for control in ("nav-read", "nav-stats", "pad", "pad-send", "pad-clear", "file-input"):
        assert control in seen, f"{control} is not reachable by Tab: {list(seen)}"
        assert seen[control] not in ("", "none"), f"{control} has no visible focus"

    desktop.find_element(By.ID, "nav-stats").send_keys(Keys.ENTER)
    wait_until(
        lambda: desktop.find_element(By.ID, "view-stats").is_displayed(),
        timeout=10,
        what="the stats view by keyboard",
    )


def test_phone_drawing_by_touch_fits_the_screen(gateway, phone):
    open_page(phone, gateway)
    check_clean(phone, "phone, empty")
    browser.screenshot(phone, "after-phone-empty")

    draw_with_finger(phone, 7)
    phone.find_element(By.ID, "pad-send").click()

    assert wait_for_answer(phone) == "7"
    answer = phone.find_element(By.ID, "answer-line")
    assert answer.size["height"] < 40, "the answer wraps onto several lines"
    track = phone.find_element(By.CSS_SELECTOR, "#probabilities li.top .track")
    assert track.size["width"] >= 150
    phone.find_elements(By.CSS_SELECTOR, "#feedback-buttons button")[7].click()
    wait_until(
        lambda: phone.find_element(By.ID, "feedback-status").text.startswith("Thanks"),
        timeout=30,
        what="the confirmation",
    )
    check_clean(phone, "phone, a drawing read")
    browser.screenshot(phone, "after-phone-result")

    open_page(phone, gateway + "/#stats")
    wait_until(
        lambda: stats_shown(phone.find_element(By.ID, "stats-status").text),
        timeout=30,
        what="the stats",
    )
    check_clean(phone, "phone, stats")
    browser.screenshot(phone, "after-phone-stats")


@pytest.mark.parametrize("width", [320, 768, 1920])
def test_no_sideways_scrolling_at_any_width(gateway, desktop, width):
    desktop.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        for view in ("/", "/#stats"):
            open_page(desktop, gateway + view)
            wait_until(
                lambda: desktop.find_elements(By.CSS_SELECTOR, "#history li"),
                timeout=30,
                what="the history",
            )
            assert browser.horizontal_overflow(desktop) == 0, (width, view)
    finally:
        desktop.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": DESKTOP[0], "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": False},
        )
