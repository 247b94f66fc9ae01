"""The draw-a-digit page in a real headless Chromium (tests/browser.py): real pointer strokes
that trace the ink of real sample digits, drawn large and off-centre, with a mouse on a
desktop window and with a finger on a 390x844 phone screen. The page must show the label the
model gives the original 28x28 row for at least 8 of 10 digits, without console errors."""

from __future__ import annotations

import numpy as np
import pytest

from browser import console_errors
from kit.data.preprocess import resample_matrix
from kit.data.split import to_float
from kit.serve.app import create_app
from kit.serve.http import BackgroundServer

pytestmark = pytest.mark.slow

UPSCALE = 4  # strokes are traced on the digit enlarged 4x (112x112): smoother than 28x28
PEN = 0.075  # the page's pen width as a share of its square (kit/serve/static/index.html)


# --------------------------------------------------------------------------- strokes from a digit


def thin(ink: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image: the one-pixel-wide centre lines of its strokes."""
    img = np.pad(ink.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = img
            n = [
                np.roll(np.roll(p, dy, 0), dx, 1)
                for dy, dx in (  # P2..P9 clockwise from north
                    (1, 0),
                    (1, -1),
                    (0, -1),
                    (-1, -1),
                    (-1, 0),
                    (-1, 1),
                    (0, 1),
                    (1, 1),
                )
            ]
            neighbours = sum(n)
            ring = n + [n[0]]
            transitions = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.uint8) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (p == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                img = img.copy()
                img[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def trace(skeleton: np.ndarray) -> list[list[tuple[int, int]]]:
    """Paths (lists of (row, col)) that visit every skeleton pixel, starting at line ends."""
    remaining = {tuple(p) for p in np.argwhere(skeleton)}
    steps = [(-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]  # straight first

    def neighbours(p, pool):
        return [(p[0] + dy, p[1] + dx) for dy, dx in steps if (p[0] + dy, p[1] + dx) in pool]

    all_pixels = set(remaining)
    paths = []
    while remaining:
        ends = [p for p in remaining if len(neighbours(p, all_pixels)) == 1]
        current = min(ends or remaining)
        path = [current]
        remaining.discard(current)
        while True:
            options = neighbours(current, remaining)
            if not options:
                break
            current = options[0]
            path.append(current)
            remaining.discard(current)
        closing = [q for q in neighbours(current, all_pixels) if q not in path[-3:]]
        if closing:  # close a loop (an 0, the top of a 9) or join the line it ran into
            path.append(closing[0])
        if len(path) >= 3:
            paths.append(path)
    return paths


def strokes_of(row: np.ndarray) -> tuple[list[np.ndarray], float]:
    """A 28x28 digit -> strokes as (n, 2) arrays of (x, y) in 28-pixel units, and its stroke width."""
    side = 28 * UPSCALE
    big = resample_matrix(28, side) @ row.reshape(28, 28).astype(np.float32) @ resample_matrix(28, side).T
    ink = big > 100
    skeleton = thin(ink)
    width = ink.sum() / max(1, skeleton.sum()) / UPSCALE  # area / length, in 28-pixel units
    strokes = []
    for path in trace(skeleton):
        points = np.array(path, dtype=float)[::2]  # every other pixel: ~2x fewer pointer moves
        if len(path) % 2 == 0:
            points = np.vstack([points, path[-1]])
        strokes.append((points[:, ::-1] + 0.5) / UPSCALE)
    return strokes, float(width)


# --------------------------------------------------------------------------- the browser side


def canvas_box(driver) -> dict:
    return driver.execute_script(
        "const r = document.getElementById('pad').getBoundingClientRect();"
        "return {x: r.left, y: r.top, side: r.width};"
    )


def draw(driver, strokes: list[np.ndarray], width: float, rng: np.random.Generator, touch: bool) -> None:
    """Trace the strokes on the page's canvas with real pointer actions, scaled so the page's pen
    is as thick relative to the digit as the original ink, at a random place on the square."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    box = canvas_box(driver)
    side = box["side"]
    points = np.vstack(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = float((high - low).max())
    scale = PEN * side / max(width, 1.0)  # CSS pixels per 28-pixel unit
    scale = min(scale, 0.85 * side / extent)  # large, but it has to fit
    scale = max(scale, 0.45 * side / extent)
    room = side - scale * (high - low) - PEN * side
    offset = PEN * side / 2 + rng.uniform(0, 1, size=2) * np.maximum(room, 0) - scale * low
    kind = interaction.POINTER_TOUCH if touch else interaction.POINTER_MOUSE
    actions = ActionBuilder(driver, mouse=PointerInput(kind, "finger" if touch else "mouse"), duration=4)
    for stroke in strokes:
        xy = [
            (int(round(box["x"] + offset[0] + scale * x)), int(round(box["y"] + offset[1] + scale * y)))
            for x, y in stroke
        ]
        actions.pointer_action.move_to_location(*xy[0])
        actions.pointer_action.pointer_down()
        for x, y in xy[1:]:
            actions.pointer_action.move_to_location(x, y)
        actions.pointer_action.pointer_up()
    actions.perform()


def shown_label(driver) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: d.execute_script(
            "const pad = document.getElementById('pad'), result = document.getElementById('result');"
            "return pad.dataset.version !== '0' && result.dataset.version === pad.dataset.version;"
        )
    )
    return driver.find_element("id", "label").text


def seen_ink(driver) -> int:
    """Sum of the page's 28x28 'what the network sees' image."""
    return driver.execute_script(
        "const d = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data;"
        "let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s;"
    )


@pytest.fixture(scope="module")
def page(sample_model):
    with BackgroundServer(create_app(sample_model.model)) as server:
        yield server.url + "/"


@pytest.fixture(scope="module")
def ten_digits(sample_model):
    """The first validation row of each digit 0..9 and the model's label for each original row."""
    picks = [int(np.flatnonzero(sample_model.y_val == d)[0]) for d in range(10)]
    rows = sample_model.x_val[picks]
    return rows, sample_model.model.predict(to_float(rows))


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_drawing_real_digits_shows_the_models_label(
    browser, page, ten_digits, sample_model, tmp_path, viewport
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    phone = viewport == "phone"
    driver = browser(390, 844, mobile=True) if phone else browser(1280, 900)
    driver.get(page)
    WebDriverWait(driver, 30).until(lambda d: "validation accuracy" in d.find_element("id", "model").text)
    assert sample_model.run_dir.name in driver.find_element("id", "model").text
    rows, expected = ten_digits
    rng = np.random.default_rng(3 if phone else 2)
    shown = []
    for digit, row in enumerate(rows):
        strokes, width = strokes_of(row)
        draw(driver, strokes, width, rng, touch=phone)
        shown.append(shown_label(driver))
        assert seen_ink(driver) > 0  # the page shows the 28x28 image the network saw
        if digit in (0, 7):
            driver.save_screenshot(str(tmp_path / f"{viewport}-{digit}.png"))
        if phone:
            assert driver.execute_script("return window.scrollY") == 0  # drawing did not scroll the page
            driver.find_element("id", "clear").click()
        else:
            ActionChains(driver).send_keys(Keys.ESCAPE).perform()  # the keyboard shortcut
        WebDriverWait(driver, 10).until(lambda d: d.find_element("id", "label").text == "?")
    agree = sum(label == str(e) for label, e in zip(shown, expected))
    print(
        f"{viewport}: page showed {shown}, model on the original rows {expected.tolist()}; {agree}/10 agree"
    )
    assert agree >= 8
    assert not console_errors(driver)


def test_the_page_before_drawing_and_after_a_mere_dot(browser, page):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(1280, 900)
    driver.get(page)
    WebDriverWait(driver, 30).until(lambda d: "validation accuracy" in d.find_element("id", "model").text)
    assert driver.find_element("id", "label").text == "?"
    assert "Draw a digit" in driver.find_element("id", "confidence").text
    # a click without moving is a dot: "draw a digit", no guess
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(driver.find_element("id", "pad")).click().perform()
    assert shown_label(driver) == "?"
    assert "Draw a digit" in driver.find_element("id", "confidence").text
    assert not console_errors(driver)


def test_choosing_an_image_file_predicts_it(browser, page, ten_digits, tmp_path):
    """The page's "Open image…" input: the file is shown on the square and sent as it is."""
    import httpx
    from selenium.webdriver.support.ui import WebDriverWait

    from served_model import drawn_png

    rows, _ = ten_digits
    image = drawn_png(rows[4], scale=6, top=100, left=20)
    path = tmp_path / "four.png"
    path.write_bytes(image)
    expected = httpx.post(page + "api/predict", content=image, headers={"Content-Type": "image/png"}).json()
    driver = browser(1280, 900)
    driver.get(page)
    WebDriverWait(driver, 30).until(lambda d: "validation accuracy" in d.find_element("id", "model").text)
    driver.find_element("id", "file").send_keys(str(path))
    assert shown_label(driver) == str(expected["label"])
    assert seen_ink(driver) == sum(expected["pixels"])  # the 28x28 preview is the server's image
    driver.save_screenshot(str(tmp_path / "file.png"))
    assert not console_errors(driver)
