"""The Gradio Space: its plain functions, every tab through gradio_client, and one search + one classification in
headless Chromium (the Debian system browser), with a screenshot kept under `out/test-artifacts/`."""

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("WVLP_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))
SCREENSHOT = ARTIFACTS / "space_demo.png"  # the classification tab after one search and one classification
SEARCH_SCREENSHOT = ARTIFACTS / "space_demo_search.png"


@pytest.fixture(scope="module")
def server(app, demo):
    blocks = app.build_ui(demo)
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.launch_kwargs())
    yield url
    blocks.close()


def test_input_validation(app, tmp_path, item_png, monkeypatch):
    assert app.load_image(item_png).mode == "RGB"
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(app.InputError, match="not an image type"):
        app.load_image(bad)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png at all")
    with pytest.raises(app.InputError, match="not a readable image"):
        app.load_image(fake)
    with pytest.raises(app.InputError, match="no image"):
        app.load_image(None)
    monkeypatch.setattr(app, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(app.InputError, match="limit"):
        app.load_image(item_png)
    with pytest.raises(app.InputError, match="empty"):
        app.check_text("   ")
    with pytest.raises(app.InputError, match="at least two"):
        app.parse_class_names("shoe, shoe")
    assert app.parse_class_names("a,\nb, a") == ["a", "b"]


def test_gallery_from_a_folder(app, tmp_path, monkeypatch):
    for i, cls in enumerate(("shoe", "shoe", "bag")):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.new("L", (20, 20), 40 * i).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    monkeypatch.setenv("WVLP_GALLERY", str(tmp_path))
    gallery = app.load_gallery(10)
    assert gallery.captions == ["bag", "shoe", "shoe"] and len(gallery.images) == 3
    monkeypatch.setenv("WVLP_GALLERY", str(tmp_path / "shoe" / "missing"))
    with pytest.raises(FileNotFoundError, match="WVLP_GALLERY"):
        app.load_gallery(10)


def test_plain_functions(app, demo, item_png):
    results = demo.search("a sneaker", 5)
    assert len(results) == 5 and all(isinstance(image, Image.Image) for image, _ in results)
    scores = [float(caption.rsplit("· ", 1)[1]) for _, caption in results]
    assert scores == sorted(scores, reverse=True)
    probs = demo.zero_shot(str(item_png), "shoe, bag, dress")
    assert list(probs) == ["shoe", "bag", "dress"] and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    itm, itc = demo.match(str(item_png), "a photo of a shoe")
    assert 0.0 <= itm <= 1.0 and -1.0 <= itc <= 1.0
    text = demo.describe("sneaker", 2, 8)
    assert text.count("echo: ") == 2 and "sneaker" in text


def test_gallery_embeddings_are_cached_on_disk(app, demo, monkeypatch):
    path = demo.gallery_cache_file()
    first = demo.gallery_embeddings()
    assert path.is_file() and first.shape == (len(demo.gallery.images), demo.model.config.embed_dim)
    demo._gallery_embeddings = None

    def no_recompute(*_):
        raise AssertionError("the cached embeddings were recomputed")

    monkeypatch.setattr(demo, "_image_embeddings", no_recompute)
    assert (demo.gallery_embeddings() == first).all()
    # Another gallery content gets another key.
    other = app.Gallery([img.copy() for img in demo.gallery.images], list(demo.gallery.captions), "copy")
    other.images[0] = 255 - other.images[0]
    assert other.content_hash() != demo.gallery.content_hash()


def test_every_tab_through_gradio_client(server, item_png):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False, analytics_enabled=False, download_files=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/search", "/zero_shot", "/match", "/describe"} <= set(endpoints)
    gallery = client.predict("a sneaker", 4, api_name="/search")
    assert len(gallery) == 4 and all(item["caption"] for item in gallery)
    label = client.predict(handle_file(str(item_png)), "sneaker, bag, coat", api_name="/zero_shot")
    assert {c["label"] for c in label["confidences"]} == {"sneaker", "bag", "coat"}
    itm, itc = client.predict(handle_file(str(item_png)), "a photo of a bag", api_name="/match")
    assert 0.0 <= itm <= 1.0 and -1.0 <= itc <= 1.0
    described = client.predict("ankle boot", 2, 16, api_name="/describe")
    assert described.count("echo: ") == 2
    # Errors reach the client as the validation message, not as a traceback.
    with pytest.raises(Exception, match="empty") as err:
        client.predict("   ", 4, api_name="/search")
    assert "Traceback" not in str(err.value)


@pytest.mark.slow  # drives the system Chromium
def test_browser_search_and_classify(server, item_png, record_property):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian chromium + chromium-driver are not installed (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # the system browser; Selenium Manager never downloads one
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(server)
        query = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "#search-query textarea, #search-query input"))
        )
        query.clear()
        query.send_keys("a bag with a handle")
        browser.find_element(By.CSS_SELECTOR, "#search-button").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#search-gallery img")) >= 8)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SEARCH_SCREENSHOT))
        tab = next(t for t in browser.find_elements(By.CSS_SELECTOR, "button[role='tab']") if "Zero-shot" in t.text)
        tab.click()
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#zs-image input[type='file']")))
        upload.send_keys(str(item_png))
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#zs-image img"))
        browser.find_element(By.CSS_SELECTOR, "#zs-button").click()
        wait.until(lambda b: "%" in b.find_element(By.CSS_SELECTOR, "#zs-label").text)
        assert "sneaker" in browser.find_element(By.CSS_SELECTOR, "#zs-label").text
        browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.quit()
    assert SCREENSHOT.stat().st_size > 10_000
    record_property("screenshot", str(SCREENSHOT))
    record_property("screenshot_search", str(SEARCH_SCREENSHOT))
    print(f"screenshots: {SCREENSHOT} {SEARCH_SCREENSHOT}")
