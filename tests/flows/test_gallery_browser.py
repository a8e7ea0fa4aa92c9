"""The gallery as a person sees it: a real batch (one pair failing), opened in headless Chromium."""

import os
import shutil
from pathlib import Path

import pytest

from flows.stylize_batch import stylize_batch
from tests.flows.helpers import make_batch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: scripts/test.sh installs them (apt-get install chromium chromium-driver)")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_the_gallery_shows_every_cell_the_originals_and_the_failure(prefect_server, tmp_path):
    manifest = make_batch(tmp_path, corrupt=True)
    assert stylize_batch(manifest=str(manifest), return_state=True).is_failed()
    index = tmp_path / "out" / "index.html"
    browser = _browser()
    try:
        browser.get(index.as_uri())
        browser.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
        browser.set_script_timeout(30)
        loaded = browser.execute_async_script(
            "const done = arguments[0];"
            "Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))"
            ".then(() => done([...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])));")
        cells = browser.execute_script("return [...document.querySelectorAll('td[data-pair]')].map(td => [td.dataset.pair, td.className, td.innerText]);")
        heads = browser.execute_script("return [...document.querySelectorAll('th')].map(th => th.innerText.trim()).filter(t => t);")
        counts = browser.execute_script("return document.querySelector('p.counts').innerText;")
        browser.save_screenshot(str(tmp_path / "gallery.png"))
    finally:
        browser.quit()
    names = {name: (cls, text) for name, cls, text in cells}
    assert set(names) == {"a__stripes", "a__waves", "b__stripes", "b__waves", "broken__stripes", "broken__waves"}
    assert all(names[n][0] == "produced" for n in ("a__stripes", "a__waves", "b__stripes", "b__waves"))
    assert names["broken__waves"][0] == "failed" and "not an image file" in names["broken__waves"][1]
    # 4 stylized thumbnails + 2 photos + 2 paintings heading the rows and columns, all decoded.
    assert len(loaded) == 8 and all(width > 0 for _, width in loaded), loaded
    assert sum(src.startswith("thumbs/originals/") for src, _ in loaded) == 4
    assert heads[:2] == ["stripes", "waves"] and {"a.png", "b.png", "broken.png"} <= set(heads)  # manifest order
    assert counts.startswith("4 images and 2 failed: 3 photos × 2 styles")
    assert Path(tmp_path / "gallery.png").stat().st_size > 10_000
