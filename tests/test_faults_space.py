"""Faults found in the Space by the adversarial battery: a corrupt or foreign embedding cache, torn thumbnails and
one-at-a-time serving under concurrent searches, and uploads that only got Gradio's generic error."""

import hashlib
import logging
import os
import re
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

CONCURRENCY = 3  # WVLP_CONCURRENCY of the app under test: below the default, so the limit is seen to be honoured
SEARCHES = 24


def write_png(path: Path, width: int, height: int, pixels: bool = True) -> Path:
    """A grayscale PNG written chunk by chunk: a real 9000x9000 file without ever holding its pixels in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(1)
    row = b"\0" * (width + 1)  # filter byte + one black row
    idat = b"".join(compressor.compress(row) for _ in range(height if pixels else 0)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


class OverlapTracker:
    """Wraps `WVLPDemo.search`: counts how many calls run at once, each given a model's latency."""

    def __init__(self, search, latency_s: float = 0.25):
        self.search, self.latency_s = search, latency_s
        self.active = self.max_active = self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, query, k=8):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            # The tiny test model answers in milliseconds, too fast for queued requests to overlap by chance.
            time.sleep(self.latency_s)
            return self.search(query, k)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def space(app, demo):
    """The real app on loopback with WVLP_CONCURRENCY=3, its searches counted by an `OverlapTracker`."""
    tracker = OverlapTracker(demo.search)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WVLP_CONCURRENCY", str(CONCURRENCY))
        patch.setattr(demo, "search", tracker)
        blocks = app.build_ui(demo)
        _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.launch_kwargs())
        try:
            yield url, tracker
        finally:
            blocks.close()


@pytest.fixture
def fresh_cache(demo):
    """The demo with no embeddings in memory and its cache file's path; the true embeddings to compare with."""
    demo._gallery_embeddings = None
    expected = demo._image_embeddings(demo.gallery.images)
    path = demo.gallery_cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    yield path, expected
    demo._gallery_embeddings = None


def assert_rebuilt(demo, path: Path, expected: torch.Tensor, caplog) -> None:
    """Search works, a warning names the cache file, and the file is rewritten whole (no temp file left)."""
    with caplog.at_level(logging.WARNING, logger="wvlp_space"):
        assert len(demo.search("a sneaker", 3)) == 3
    assert torch.allclose(demo.gallery_embeddings(), expected, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in message and "rebuilding" in message for message in warnings), warnings
    assert torch.allclose(torch.load(path, weights_only=True), expected, atol=1e-6)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------- 19 / 24: the embedding cache


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong shape", "not a tensor"])
def test_a_damaged_embedding_cache_is_rebuilt(demo, fresh_cache, caplog, damage):
    path, expected = fresh_cache
    torch.save(expected, path)
    whole = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong shape":
        torch.save(expected[:-1], path)  # a cache of another gallery size must not be searched
    else:
        torch.save({"embeddings": expected.tolist()}, path)
    assert_rebuilt(demo, path, expected, caplog)


class RunsOnLoad:
    """Pickles to a call of os.makedirs(marker): what a planted cache file could run if loaded unrestricted."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_a_pickled_object_in_the_cache_is_not_run_but_rebuilt(demo, fresh_cache, caplog, tmp_path):
    path, expected = fresh_cache
    marker = tmp_path / "the-cache-ran-code"
    torch.save(RunsOnLoad(marker), path)
    assert b"makedirs" in path.read_bytes()  # the payload really is a call, not inert data
    assert_rebuilt(demo, path, expected, caplog)
    assert not marker.exists()


# ---------------------------------------------------------------- 20: thumbnails and concurrent searches


def test_two_writers_of_one_thumbnail_never_expose_a_partial_file(app, tmp_path):
    # Noise does not compress: a ~0.75 MB PNG takes long enough to write that a torn write would be seen.
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    probe = app.save_thumbnail(image, tmp_path / "probe")
    whole = probe.read_bytes()
    folder = tmp_path / "thumbnails"
    target = folder / probe.name
    torn: list[int] = []
    for _ in range(15):
        start, writers_done = threading.Barrier(3), threading.Event()
        paths: list[Path] = []

        def write():
            start.wait()
            paths.append(app.save_thumbnail(image, folder))

        def read():
            start.wait()
            while not writers_done.is_set():
                try:
                    data = target.read_bytes()
                except FileNotFoundError:
                    continue
                if data != whole:
                    torn.append(len(data))

        threads = [threading.Thread(target=write), threading.Thread(target=write), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        for thread in threads[:2]:
            thread.join()
        writers_done.set()
        threads[2].join()
        assert paths == [target, target] and target.read_bytes() == whole
        target.unlink()
    assert torn == [], f"a reader saw {len(torn)} partial thumbnails ({sorted(set(torn))[:5]} of {len(whole)} bytes)"
    assert list(folder.iterdir()) == []  # no temp file left behind


def test_concurrent_searches_all_return_complete_thumbnails_in_parallel(space, tmp_path):
    from gradio_client import Client

    url, tracker = space
    client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
    calls_before = tracker.calls
    # One query for all: every search writes and serves the very same thumbnail files, the case that tore them.
    jobs = [client.submit("a sneaker", 8, api_name="/search") for _ in range(SEARCHES)]
    results = [job.result(timeout=180) for job in jobs]
    assert tracker.calls - calls_before == SEARCHES
    assert 2 <= tracker.max_active <= CONCURRENCY, f"{tracker.max_active} searches ran at once"
    files = [Path(item["image"]) for result in results for item in result]
    assert len(files) == SEARCHES * 8
    for file in files:
        data = file.read_bytes()
        assert hashlib.sha256(data).hexdigest()[:32] == file.stem, f"{file} is not the thumbnail it names"
        with Image.open(file) as image:
            image.load()
            assert image.format == "PNG" and image.size == (112, 112)


def test_concurrency_limit_comes_from_the_environment(app, monkeypatch):
    monkeypatch.delenv("WVLP_CONCURRENCY", raising=False)
    assert app.concurrency_limit() == app.DEFAULT_CONCURRENCY
    monkeypatch.setenv("WVLP_CONCURRENCY", "6")
    assert app.concurrency_limit() == 6
    for bad in ("0", "-2", "many", "2.5"):
        monkeypatch.setenv("WVLP_CONCURRENCY", bad)
        with pytest.raises(ValueError, match=f"WVLP_CONCURRENCY='{bad}' must be a whole number >= 1"):
            app.concurrency_limit()


# ---------------------------------------------------------------- 23: uploads


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory):
    """Uploads Gradio's own preprocessing rejects, each with the words its error message must contain."""
    folder = tmp_path_factory.mktemp("bad-uploads")
    (folder / "notes.txt").write_text("just some notes, not a picture\n")
    (folder / "report.png").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n")
    return {
        "notes.txt": (folder / "notes.txt", [r"notes\.txt", r"\.txt is not an image type"]),
        "report.png": (folder / "report.png", [r"report\.png is not a readable image", "PDF document"]),
        "bomb.png": (write_png(folder / "bomb.png", 20000, 20000, pixels=False), [r"bomb\.png", "too many pixels"]),
        "huge.png": (write_png(folder / "huge.png", 9000, 9000), [r"huge\.png is 9000x9000", "too many pixels"]),
    }


def test_a_huge_png_is_rejected_by_its_header_before_decoding(app, item_png, bad_uploads, monkeypatch):
    huge, _ = bad_uploads["huge.png"]
    with Image.open(huge) as image:
        assert image.size == (9000, 9000)  # a real, decodable PNG: only its size is wrong
    decoded: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def spy(image):
        decoded.append(image.size)
        return original(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    assert app.load_image(item_png).size == (28, 28)
    assert decoded and set(decoded) == {(28, 28)}  # the spy sees the decode path of a good file
    decoded.clear()
    with pytest.raises(app.InputError, match=r"huge\.png is 9000x9000 = 81,000,000 pixels: too many pixels"):
        app.load_image(huge)
    assert decoded == [], "the 9000x9000 PNG was decoded before it was rejected"


@pytest.mark.parametrize("upload", ["notes.txt", "report.png", "bomb.png", "huge.png"])
def test_each_bad_upload_gets_its_own_message_through_the_app(space, bad_uploads, upload):
    from gradio_client import Client, handle_file

    url, _ = space
    path, patterns = bad_uploads[upload]
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    for endpoint, args in (("/zero_shot", ("shoe, bag",)), ("/match", ("a shoe",))):
        with pytest.raises(Exception) as err:
            client.predict(handle_file(str(path)), *args, api_name=endpoint)
        message = str(err.value)
        for pattern in patterns:
            assert re.search(pattern, message), f"{endpoint} {upload}: {message}"
        assert "Traceback" not in message


def test_a_good_upload_still_works_through_the_app(space, item_png):
    from gradio_client import Client, handle_file

    url, _ = space
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    label = client.predict(handle_file(str(item_png)), "sneaker, bag", api_name="/zero_shot")
    assert {c["label"] for c in label["confidences"]} == {"sneaker", "bag"}
    itm, itc = client.predict(handle_file(str(item_png)), "a bag", api_name="/match")
    assert 0.0 <= itm <= 1.0 and -1.0 <= itc <= 1.0
