"""The lecture deck builds offline and renders in a real browser (headless Chromium)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "slides" / "build"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def deck() -> Path:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    if shutil.which("npm") is None and not (ROOT / "slides" / "node_modules" / "reveal.js").exists():
        pytest.skip("npm is not installed: it fetches reveal.js and KaTeX for the deck (apt-get install npm)")
    out = subprocess.run([sys.executable, "slides/build.py"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return BUILD / "index.html"


def test_built_deck_references_no_remote_file(deck):
    text = deck.read_text()
    for marker in ('src="http', "src='http", 'href="http', "cdn.", "unpkg.com", "jsdelivr"):
        assert marker not in text, marker


def test_every_slide_renders_offline_in_chromium(deck):
    from playwright.sync_api import sync_playwright

    expected = json.loads((BUILD / "slides.json").read_text())["slides"]
    requests, failures = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("request", lambda r: requests.append(r.url))
        page.on("requestfailed", lambda r: failures.append(r.url))
        page.goto(deck.as_uri())
        page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30000)
        assert page.evaluate("Reveal.getTotalSlides()") == expected
        figure_slide = None
        for i in range(expected):
            page.evaluate(f"Reveal.slide({i})")
            page.wait_for_timeout(150)
            slide = page.evaluate(
                """() => { const s = Reveal.getCurrentSlide();
                           const imgs = [...s.querySelectorAll('img')];
                           return {text: s.innerText.trim().length,
                                   images: imgs.length,
                                   loaded: imgs.every(im => im.complete && im.naturalWidth > 0),
                                   missing: s.querySelectorAll('.missing').length,
                                   mathErrors: s.querySelectorAll('.katex-error').length,
                                   rawMath: s.innerText.includes(String.fromCharCode(92) + '(') || s.innerText.includes('$$')}; }"""
            )
            assert slide["text"] > 0, f"slide {i} is empty"
            assert slide["loaded"], f"slide {i}: an image did not load"
            assert slide["missing"] == 0, f"slide {i} lacks a record"
            assert slide["mathErrors"] == 0, f"slide {i}: KaTeX could not render"
            assert not slide["rawMath"], f"slide {i} shows unrendered TeX"
            if i == 0:
                page.screenshot(path=str(BUILD / "screenshot_title.png"))
            if slide["images"] and figure_slide is None:
                figure_slide = i
                page.screenshot(path=str(BUILD / "screenshot_figure.png"))
        assert page.evaluate("document.querySelectorAll('.katex').length") > 0  # the maths rendered
        browser.close()
    assert figure_slide is not None
    remote = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    assert remote == [], f"requests left the machine: {remote}"
    assert failures == []
    assert (BUILD / "screenshot_title.png").stat().st_size > 0 and (BUILD / "screenshot_figure.png").stat().st_size > 0
