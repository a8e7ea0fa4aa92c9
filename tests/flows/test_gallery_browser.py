"""The gallery as a person sees it: a real batch (one pair failing), opened in headless Chromium."""

import os
import shutil
from pathlib import Path

import pytest

from nst_batch.flows.stylize_batch import stylize_batch
from tests.flows.helpers import TINY, make_batch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail(
                "chromium and chromedriver are missing: scripts/test.sh installs them (apt-get install chromium "
                "chromium-driver)"
            )
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--allow-file-access-from-files",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _load_every_image(browser):
    """Wait until every image of the page has loaded (or failed); [src, naturalWidth] of each."""
    browser.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    browser.set_script_timeout(30)
    return browser.execute_async_script(
        "const done = arguments[0];"
        "Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))"
        ".then(() => done([...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])));"
    )


def test_the_gallery_shows_every_cell_the_originals_and_the_failure(prefect_server, tmp_path):
    manifest = make_batch(tmp_path, corrupt=True)
    assert stylize_batch(manifest=str(manifest), return_state=True).is_failed()
    index = tmp_path / "out" / "index.html"
    browser = _browser()
    try:
        browser.get(index.as_uri())
        loaded = _load_every_image(browser)
        cells = browser.execute_script(
            "return [...document.querySelectorAll('td[data-pair]')].map(td => [td.dataset.pair, td.className, "
            "td.innerText]);"
        )
        heads = browser.execute_script(
            "return [...document.querySelectorAll('th')].map(th => th.innerText.trim()).filter(t => t);"
        )
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


def test_a_swept_pair_is_compared_side_by_side_in_the_sweeps_order(prefect_server, tmp_path):
    manifest = make_batch(tmp_path)
    manifest.write_text(
        TINY + "output: out\ncontents: [photos/*.png]\nstyles:\n  waves: styles/waves.png\n"
        "  stripes: {path: styles/stripes.png, sweep: {style_weight: [1000, 10], style_scale: [0.5, 1.0]}}\n"
    )
    assert stylize_batch(manifest=str(manifest), return_state=True).is_completed()
    browser = _browser()
    try:
        browser.get((tmp_path / "out" / "index.html").as_uri())
        loaded = _load_every_image(browser)
        sections = browser.execute_script(
            "return [...document.querySelectorAll('section.sweep')].map(s => ({id: s.id, sweep: s.dataset.sweep,"
            " varies: s.querySelector('h2 mark.varies').innerText, heads: [...s.querySelectorAll('th img')].length,"
            " points: [...s.querySelectorAll('td[data-values]')].map(td => [JSON.parse(td.dataset.values),"
            " [...td.querySelectorAll('mark.swept-value')].map(m => m.innerText), "
            "td.querySelector('img').naturalWidth])}));"
        )
        links = browser.execute_script(
            "return [...document.querySelectorAll('td.produced a.compare')].map(a => [a.closest('td').dataset.pair,"
            " a.getAttribute('href'), a.innerText]);"
        )
        counts = browser.execute_script("return document.querySelector('p.counts').innerText;")
        # Each point's measured quality, and the section's two orders of them.
        measured = browser.execute_script(
            "return [...document.querySelectorAll('section.sweep')].map(s => ({"
            " gains: [...s.querySelectorAll('td[data-values]')].map(td => [td.dataset.values, "
            "parseFloat(td.dataset.styleGain),"
            " parseFloat(td.dataset.content), td.querySelector('div.quality').innerText]),"
            " by_style: [...s.querySelectorAll('ol.by-style li')].map(li => li.dataset.values),"
            " by_content: [...s.querySelectorAll('ol.by-content li')].map(li => li.dataset.values)}));"
        )
        browser.save_screenshot(str(tmp_path / "sweep.png"))
    finally:
        browser.quit()
    assert len(loaded) == 8 + 2 + 2 + 2 * 4 and all(width > 0 for _, width in loaded), loaded  # every image decodes
    assert [s["sweep"] for s in sections] == ["a__stripes", "b__stripes"]
    order = [{"style_weight": w, "style_scale": s} for w in (1000, 10) for s in (0.5, 1.0)]  # the manifest's order
    for section in sections:
        assert section["varies"] == "style_weight, style_scale" and section["heads"] == 2  # the photo and the painting
        assert [p[0] for p in section["points"]] == order
        assert [p[1] for p in section["points"]][1] == ["style_weight 1000", "style_scale 1"]
        assert all(p[2] > 0 for p in section["points"])
    # The grid shows each swept pair once, linking to its comparison.
    assert [(pair, text) for pair, _, text in links] == [
        ("a__stripes__style_weight-1000__style_scale-0.5", "4 settings: compare ↓"),
        ("b__stripes__style_weight-1000__style_scale-0.5", "4 settings: compare ↓"),
    ]
    assert [href for _, href, _ in links] == [f"#{s['id']}" for s in sections]
    assert counts.startswith("10 images: 2 photos × 2 styles")
    for section in measured:
        assert len(section["gains"]) == 4 and all(
            text.startswith("content ") and " · style " in text for *_, text in section["gains"]
        )
        assert section["by_style"] == [v for v, *_ in sorted(section["gains"], key=lambda g: g[1])]
        assert section["by_content"] == [v for v, *_ in sorted(section["gains"], key=lambda g: g[2])]
        assert all(
            0 < g <= 1.5 and c >= 0 for _, g, c, _ in section["gains"]
        )  # TINY runs: a few iterations, gains near 1


PWN = "window.__pwned = (window.__pwned || 0) + 1"
HOSTILE = [
    f"javascript:{PWN}",
    f"data:text/html,<script>{PWN}</script>",
    f"<script>{PWN}</script>",
    f'"><img src=x onerror="{PWN}">',
    f"JaVaScRiPt:{PWN}",
    "../../../etc/passwd",
    "/etc/passwd",
    "//evil.example/x.png",
    "thumbs/../../x.png",
]


def _hostile_root(root: Path) -> None:
    """An output root as a stranger with write access to its S3 prefix could leave it: sidecars
    with script and URLs in every field, fields of the wrong type, an empty style list, a summary
    of the wrong shape."""
    import json

    from tests.flows.helpers import save
    from tests.synthetic import photo_like

    save(photo_like(24, 24), root / "ok.png")
    save(photo_like(24, 24), root / "thumbs" / "ok.jpg")
    for i, evil in enumerate(HOSTILE):
        name = f"evil{i}"
        save(photo_like(24, 24), root / f"{name}.png")
        meta = {
            "name": evil,
            "output": evil,
            "content": {"uri": evil, "sha256": evil},
            "styles": [{"name": evil, "uri": evil}],
            "parameters": {"size": evil, "style_blend": [evil]},
            "final_losses": {evil: evil},
            "device": {"name": evil},
            "output_size": [evil],
            "wall_time_s": evil,
            "scales": [{"height": evil}],
            "sweep": {evil: evil},
            "sweep_of": evil,
        }
        (root / f"{name}.json").write_text(json.dumps(meta))
    shapes = {
        "types1": {"name": "types1", "styles": "notalist", "content": 5},
        "types2": {"name": "types2", "styles": [3], "content": {"uri": 7}},
        "types3": {
            "name": "types3",
            "styles": [{"name": 1, "uri": None}],
            "content": {"uri": "c.png"},
            "final_losses": [1, 2],
            "output_size": "big",
            "parameters": 5,
            "wall_time_s": True,
            "scales": "x",
            "sweep": ["a"],
        },
        "nostyle": {"name": "nostyle", "styles": [], "content": {"uri": "c.png"}, "parameters": {"style_blend": []}},
    }
    for name, meta in shapes.items():
        save(photo_like(24, 24), root / f"{name}.png")
        (root / f"{name}.json").write_text(json.dumps(meta))
    (root / "ok.json").write_text(
        json.dumps(
            {
                "name": "ok",
                "output": "ok.png",
                "content": {"uri": "photos/ok.png"},
                "styles": [{"name": "s", "uri": "s.png"}],
            }
        )
    )
    rows: list[object] = ["not a row", 7]
    rows += [
        {
            "name": evil,
            "status": evil,
            "content": evil,
            "styles": [evil],
            "style_names": [],
            "blend": [],
            "reason": evil,
        }
        for evil in HOSTILE
    ]
    rows += [
        {"name": "empty", "status": "failed", "styles": [], "style_names": [], "blend": []},
        {"name": "ok", "status": "produced"},
        {"name": "x", "styles": "s", "blend": "b", "sweep": 5},
    ]
    (root / "summary.json").write_text(json.dumps({"pairs": rows}))


def test_hostile_sidecars_run_no_script_and_the_page_renders(tmp_path):
    """Nothing a sidecar or a summary says reaches an href or src, no script runs, every cell
    renders (an unreadable one says so), and `nst gallery` exits 0 without a traceback."""
    import contextlib
    import io

    from nst_batch.cli.main import main

    root = tmp_path / "out"
    _hostile_root(root)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["gallery", str(root)]) == 0, err.getvalue()
    assert "Traceback" not in err.getvalue()
    page = (root / "index.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page.lower()
    browser = _browser()
    try:
        browser.get((root / "index.html").as_uri())
        _load_every_image(browser)
        links = browser.execute_script(
            "return [...document.querySelectorAll('[href],[src]')].map(e => e.getAttribute('href') || "
            "e.getAttribute('src'));"
        )
        # Follow every link the page has, as a curious viewer would.
        for i in range(len(links)):
            with contextlib.suppress(Exception):
                browser.execute_script(
                    f"document.querySelectorAll('a[href]')[{i}] && document.querySelectorAll('a[href]')[{i}].click()"
                )
                browser.back()
        browser.get((root / "index.html").as_uri())
        pwned = browser.execute_script("return window.__pwned || 0;")
        cells = browser.execute_script(
            "return [...document.querySelectorAll('td[data-pair]')].map(td => [td.dataset.pair, td.className]);"
        )
        browser.save_screenshot(str(tmp_path / "hostile.png"))
    finally:
        browser.quit()
    assert pwned == 0
    assert links and all(":" not in link and ".." not in link and not link.startswith("/") for link in links), links
    names = dict(cells)
    assert names["ok"] == "produced"
    assert {"evil0", "types1", "types2", "types3", "nostyle"} <= set(names)
    assert names["types1"] == "unreadable" and names["types2"] == "unreadable"


def test_the_grid_never_upscales_keeps_rows_short_and_heads_with_the_run(prefect_server, tmp_path):
    """At 1400 and 800 px: a thumbnail is never drawn wider than the pixels of what it shows (a
    32-px output stays 32 px; a 320-px one grows to its full output through srcset, no further), a
    portrait cell is at most 45 % of the window tall, and the page opens with the last run: when,
    which manifest, its counts and its failed pairs with their reasons. After a re-run that
    skipped everything, every cell still shows its image, 'made earlier'."""
    manifest = make_batch(tmp_path, corrupt=True)
    text = manifest.read_text()
    manifest.write_text(
        text
        + "pairs:\n  - {content: photos/a.png, style: stripes}\n  - {content: photos/b.png, style: waves, size: 320}\n"
        "  - {content: photos/broken.png, style: waves}\n  - {content: photos/tall.png, style: stripes, size: 320}\n"
    )
    from tests.flows.helpers import save
    from tests.synthetic import photo_like

    save(photo_like(96, 40), tmp_path / "photos" / "tall.png")  # a portrait photo
    assert stylize_batch(manifest=str(manifest), return_state=True).is_failed()
    assert stylize_batch(manifest=str(manifest), return_state=True).is_failed()  # broken.png fails again
    import json

    assert json.loads((tmp_path / "out" / "summary.json").read_text())["done_earlier"] == 3
    browser = _browser()
    figures = {}
    shots = Path(os.environ.get("NST_SCREENSHOTS", tmp_path))
    try:
        for width in (1400, 800):
            browser.set_window_size(width, 1000)
            browser.get((tmp_path / "out" / "index.html").as_uri())
            loaded = _load_every_image(browser)
            figures[width] = browser.execute_script(
                "const imgs = [...document.querySelectorAll('table.grid td img')];"
                "return {inner: window.innerWidth, height: window.innerHeight,"
                " thumbs: imgs.map(i => [i.closest('td').dataset.pair, i.getBoundingClientRect().width, "
                "i.getBoundingClientRect().height]),"
                " run: document.querySelector('div.run') && document.querySelector('div.run').innerText,"
                " first: document.body.children[1].className,"
                " labels: [...document.querySelectorAll('table.grid td summary')].map(s => s.innerText)};"
            )
            assert all(w > 0 for _, w in loaded), loaded
            shots.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(shots / f"gallery-{width}.png"))
    finally:
        browser.quit()
    for width, f in figures.items():
        drawn = {name: (w, h) for name, w, h in f["thumbs"]}
        assert set(drawn) == {"a__stripes", "b__waves", "tall__stripes"}, drawn
        assert drawn["a__stripes"][0] <= 32.5, (width, drawn)  # a 32x24 output: never upscaled
        assert drawn["b__waves"][0] <= 320.5 and drawn["b__waves"][0] > 32  # grows to its output's 320 px, no further
        assert drawn["tall__stripes"][1] <= 0.45 * f["height"] + 1, (width, drawn)  # several rows fit a screen
        assert f["first"] == "run", f["first"]  # the run header comes first
        assert "4 planned, 0 produced, 3 done earlier, 1 failed" in f["run"] and str(manifest) in f["run"]
        assert "broken__waves: " in f["run"] and "not an image file" in f["run"]
        assert all(label.startswith("made earlier, ") and label.endswith("UTC · details") for label in f["labels"]), f[
            "labels"
        ]
    assert figures[1400]["thumbs"] and figures[800]["inner"] <= 800


def test_names_in_any_script_are_shown_and_a_second_manifest_keeps_the_first_ones_results(prefect_server, tmp_path):
    """café and 東京 are produced, linked and shown; a name that is not UTF-8 is skipped with a
    note, not a failure after writing; a second manifest whose photo has the same stem (another
    camera's card) writes beside the first one's result, which stays, and both are shown."""
    manifest = make_batch(tmp_path)
    (tmp_path / "photos" / "a.png").rename(tmp_path / "photos" / "café.png")
    (tmp_path / "photos" / "b.png").rename(tmp_path / "photos" / "東京.png")
    shutil.copy(tmp_path / "photos" / "café.png", os.path.join(tmp_path / "photos", os.fsdecode(b"caf\xe9 zip.png")))
    manifest.write_text(
        manifest.read_text().replace(
            "styles: {stripes: styles/stripes.png, waves: styles/waves.png}", "styles: {stripes: styles/stripes.png}"
        )
    )
    first = stylize_batch(manifest=str(manifest), return_state=True)
    assert first.is_completed(), first.message
    made = (tmp_path / "out" / "café__stripes.png").read_bytes()
    other = tmp_path / "card2"
    (other / "photos").mkdir(parents=True)
    shutil.copy(tmp_path / "photos" / "東京.png", other / "photos" / "café.png")  # another photo, the same stem
    (other / "m.yaml").write_text(
        TINY + f"output: {tmp_path / 'out'}\nstyles: {{stripes: {tmp_path / 'styles' / 'stripes.png'}}}\n"
        "contents: [photos/café.png]\n"
    )
    second = stylize_batch(manifest=str(other / "m.yaml"), return_state=True)
    assert second.is_completed(), second.message
    assert (tmp_path / "out" / "café__stripes.png").read_bytes() == made  # the first run's result stays
    (moved,) = [p.name for p in (tmp_path / "out").glob("café__stripes-*.png")]
    browser = _browser()
    try:
        browser.get((tmp_path / "out" / "index.html").as_uri())
        loaded = _load_every_image(browser)
        cells = browser.execute_script(
            "return [...document.querySelectorAll('td[data-pair]')].map(td => [td.dataset.pair, td.className, "
            "td.innerText]);"
        )
        links = browser.execute_script("return [...document.querySelectorAll('td.produced a')].map(a => a.href);")
    finally:
        browser.quit()
    names = {name: (cls, text) for name, cls, text in cells}
    assert set(names) == {"café__stripes", "東京__stripes", moved[:-4]}, names
    assert all(cls == "produced" and "no output file" not in text for cls, text in names.values()), names
    assert len(loaded) >= 3 and all(width > 0 for _, width in loaded), loaded
    assert any(link.endswith("caf%C3%A9__stripes.png") for link in links), links
