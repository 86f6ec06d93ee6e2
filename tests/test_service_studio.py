"""The web studio (noisecraft/service/static/, served at "/"): its files in-process, then end to end in a real
headless Chromium driven by selenium against uvicorn serving the shipped text-to-image model with a bearer token:
the token field, a generation with its progress and images, reusing the seed (the same image bytes), cancel, a
refused prompt's reason in words, an img2img upload and click-to-reuse parameters.

The browser test skips, saying why, where selenium, Chromium or chromedriver is missing (``.ci/browser.sh``
installs them on Debian). Set NOISECRAFT_STUDIO_SCREENSHOT=docs/images/studio.png to refresh the README's
screenshot (1200x800); by default it goes to the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from test_service_support import make_app, stub_model, stub_registered  # noqa: E402,F401

from noisecraft.protocol import Refused, add_check  # noqa: E402

TOKEN = "studio-test-token"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1200,800"]


def test_the_studio_is_served_at_the_root_and_the_api_is_unchanged(tmp_path, stub_registered):
    app = make_app(tmp_path / "data", stub_model(tmp_path / "models" / "stub"), workers=0, token=TOKEN)
    with TestClient(app) as client:
        page = client.get("/")  # the page needs no token; every API call it makes sends one
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/studio.js"' in page.text and 'id="token"' in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "blob:" in csp and "unsafe-inline" not in csp
        for name, media in (("studio.js", "javascript"), ("studio.css", "text/css")):
            response = client.get(f"/static/{name}")
            assert response.status_code == 200 and media in response.headers["content-type"]
        script = client.get("/static/studio.js").text
        assert "Authorization" in script and "getReader" in script  # bearer header; events read by fetch()
        assert client.get("/static/../app.py").status_code == 404
        assert client.get("/static/nope.js").status_code == 404
        assert client.get("/v1/models").status_code == 401  # the API still wants its token
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_the_static_files_ship_with_the_package():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"service/static/*"' in pyproject
    static = Path(__file__).parents[1] / "noisecraft" / "service" / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "studio.js", "studio.css"}


# --- the browser ---


def _browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip saying what is missing."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium; the dev extra)")
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (the serve extra)")
    browser = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                    if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        pytest.skip(f"no {missing} on this machine: run .ci/browser.sh (Debian: apt-get install chromium "
                    f"chromium-driver) to run the studio in a real browser")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn on 127.0.0.1 serving the shipped text-to-image model, with a token; yields the base URL."""
    _browser()
    import uvicorn

    from noisecraft.service.app import ServiceConfig, create_app
    from noisecraft.service.models import shipped_model_dirs

    if "shapes_t2i" not in [p.name for p in shipped_model_dirs()]:
        pytest.skip("the shipped model noisecraft/assets/shapes_t2i is missing")
    config = ServiceConfig(data_dir=tmp_path_factory.mktemp("studio"), include_shipped=True, token=TOKEN,
                           poll=0.05, events_poll=0.05)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException

    binary, driver_path = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    except WebDriverException as error:
        pytest.skip(f"Chromium did not start under chromedriver: {error.msg}")
    driver.set_window_size(1200, 800)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(1200 + 1200 - inner[0], 800 + 800 - inner[1])  # a 1200x800 page, whatever the frame
    yield driver
    driver.quit()


def test_the_studio_generates_reuses_a_seed_cancels_and_shows_a_refusal(server, browser, tmp_path):
    import httpx
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    driver = browser

    def wait(condition, timeout=60.0, what="the page"):
        try:
            return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition())
        except TimeoutException:
            page = driver.execute_script(
                "return {status: document.getElementById('status').textContent, message: "
                "document.getElementById('message').textContent, cards: [...document.querySelectorAll('.card')]"
                ".map(c => c.dataset.state + ': ' + c.textContent.slice(0, 200))}")
            logs = [entry["message"] for entry in driver.get_log("browser")]
            raise AssertionError(f"timed out waiting for {what}; the page: {page}; its log: {logs}") from None

    def find(css):
        return driver.find_element(By.CSS_SELECTOR, css)

    def cards():
        return driver.find_elements(By.CSS_SELECTOR, "#gallery .card")

    def finished_card(known: set[str], state="succeeded"):
        """The new card (job id not in ``known``) once it is ``state`` with every image shown."""
        def ready():
            for card in cards():
                if card.get_attribute("data-job") in known or card.get_attribute("data-state") != state:
                    continue
                images = card.find_elements(By.CSS_SELECTOR, ".images img")
                if state != "succeeded" or (images and all(
                        driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images)):
                    return card
            return None
        return wait(ready, what=f"a {state} job in the gallery")

    def image_bytes(card):
        return [api.get(img.get_attribute("data-url")).content
                for img in card.find_elements(By.CSS_SELECTOR, ".images img")]

    # 1. the server wants a token: the page says so; the token typed in is kept in localStorage
    driver.get(server + "/")
    wait(lambda: find("#message").is_displayed() and "token" in find("#message").text, what="the token message")
    find("#token").send_keys(TOKEN)
    find("#token-save").click()
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#param-prompt"), what="the model's form")
    assert driver.execute_script("return localStorage.getItem('noisecraft.token')") == TOKEN
    # the form comes from GET /v1/models: limits on numbers, choices in selects, a checkbox, image uploads; other
    # shipped models (points_shapes) may come first: choosing a model rebuilds the form from its parameters
    from selenium.webdriver.support.ui import Select

    Select(find("#model")).select_by_value("shapes_t2i")
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#param-resize"), what="the text-to-image form")
    assert find("#model").get_attribute("value") == "shapes_t2i"
    assert find("#param-steps").get_attribute("max") == "1000" and find("#param-steps").get_attribute("min") == "1"
    assert "dpmpp_2m" in [o.get_attribute("value") for o in find("#param-sampler").find_elements(By.TAG_NAME, "option")]
    assert find("#param-resize").get_attribute("type") == "checkbox"
    assert find("#param-init_image").get_attribute("type") == "file"

    # 2. a prompt, 4 steps, 2 images, a random seed: the images appear
    find("#param-prompt").send_keys("a red circle")
    for name, value in (("steps", "4"), ("n", "2")):
        find(f"#param-{name}").clear()
        find(f"#param-{name}").send_keys(value)
    Select(find("#param-sampler")).select_by_value("euler")
    find("#generate").click()
    first = finished_card(set())
    first_id = first.get_attribute("data-job")
    job = api.get(f"/v1/jobs/{first_id}").json()
    assert job["state"] == "succeeded" and job["seed_was_random"]
    assert job["params"] == {"prompt": "a red circle", "steps": 4, "n": 2, "sampler": "euler", "schedule": "karras",
                             "guidance": 3.0, "resize": False}
    # a random seed goes up to 2**63: the page keeps every digit
    assert first.find_element(By.CSS_SELECTOR, ".seed-value").text == str(job["seed"])
    assert driver.execute_script("const p = document.getElementById('progress'); return p.value === p.max")
    first_images = image_bytes(first)
    assert len(first_images) == 2 and all(b.startswith(b"\x89PNG") for b in first_images)

    # 3. reuse its seed, generate again: the same images
    first.find_element(By.CSS_SELECTOR, ".reuse-seed").click()
    assert find("#seed").get_attribute("value") == str(job["seed"])
    assert not find(".field img.preview").is_displayed() and find("#param-strength").get_attribute("value") == ""
    find("#generate").click()
    second = finished_card({first_id})
    second_job = api.get(f"/v1/jobs/{second.get_attribute('data-job')}").json()
    assert second_job["seed"] == job["seed"] and not second_job["seed_was_random"]
    assert image_bytes(second) == first_images
    shown = [driver.execute_script("return arguments[0].src", img)
             for img in second.find_elements(By.CSS_SELECTOR, ".images img")]
    assert all(src.startswith("blob:") for src in shown)  # fetched with the token, never a token in a URL
    _screenshot(driver, tmp_path)

    # 4. a long job: progress events move the bar, cancel stops it
    find("#param-steps").clear()
    find("#param-steps").send_keys("1000")
    find("#generate").click()
    wait(lambda: "step" in find("#status").text and find("#status").text.split("step ")[1].split(" ")[0] != "0",
         what="progress from the event stream")
    assert float(find("#progress").get_attribute("value")) >= 1
    find("#cancel").click()
    finished_card({first_id, second_job["id"]}, state="cancelled")

    # 5. a refused prompt: its reason in words
    def refuse(pipeline, params):
        if "forbidden" in str(params.get("prompt") or ""):
            raise Refused("prompts may not contain the word 'forbidden'", check="studio-test")

    remove = add_check("before", refuse)
    try:
        before = len(cards())
        find("#param-prompt").clear()
        find("#param-prompt").send_keys("a forbidden square")
        find("#generate").click()
        wait(lambda: "Refused" in find("#message").text, what="the refusal")
        assert find("#message").text == "Refused: prompts may not contain the word 'forbidden' (check: studio-test)"
        assert len(cards()) == before  # nothing was queued
    finally:
        remove()

    # 6. img2img: an uploaded init image travels as base64 and is kept by the server
    from PIL import Image

    Image.new("RGB", (32, 32), (0, 0, 255)).save(tmp_path / "init.png")
    find("#param-init_image").send_keys(str(tmp_path / "init.png"))
    wait(lambda: find("#param-init_image").find_element(By.XPATH, "..").find_element(By.CSS_SELECTOR, "img.preview")
         .is_displayed(), what="the upload's preview")
    find("#param-prompt").clear()
    find("#param-prompt").send_keys("a blue square")
    for name, value in (("steps", "4"), ("n", "1"), ("strength", "0.5")):
        find(f"#param-{name}").clear()
        find(f"#param-{name}").send_keys(value)
    find("#param-resize").click()
    known = {card.get_attribute("data-job") for card in cards()}
    find("#generate").click()
    edited = api.get(f"/v1/jobs/{finished_card(known).get_attribute('data-job')}").json()
    assert edited["params"]["init_image"].startswith("uploads/") and edited["params"]["strength"] == 0.5
    assert edited["params"]["resize"] is True and "mask" not in edited["params"]

    # 7. click-to-reuse: the first job's parameters come back into the form (and the upload goes)
    driver.find_element(By.CSS_SELECTOR, f'.card[data-job="{first_id}"] .reuse-params').click()
    assert find("#param-prompt").get_attribute("value") == "a red circle"
    assert find("#param-steps").get_attribute("value") == "4"
    assert find("#seed").get_attribute("value") == str(job["seed"])
    assert not find(".field img.preview").is_displayed() and find("#param-strength").get_attribute("value") == ""

    errors = [entry["message"] for entry in driver.get_log("browser")
              if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]
    assert not errors, errors  # no script errors (the expected 401 and 422 responses are logged as failed loads)


def _screenshot(driver, tmp_path: Path) -> None:
    """The page at 1200x800, as a small palette PNG."""
    from PIL import Image

    target = Path(os.environ.get("NOISECRAFT_STUDIO_SCREENSHOT") or tmp_path / "studio.png")
    driver.execute_script("window.scrollTo(0, 0)")
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    assert image.size[0] >= 1000, image.size
    target.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
