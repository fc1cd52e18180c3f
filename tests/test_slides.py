"""The lecture deck builds offline, vendors only what it loads, and renders in headless Chromium.

The browser tests walk every slide at the viewports a projector or laptop gives (1280×720 and
1280×800): each slide must render its images and maths, and nothing on it may stick out of the
slide reveal.js lays out. Screenshots go to slides/build/ (title, first figure, and every slide
that overflows).
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "slides" / "build"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VENDORED = ("reveal.js", "katex")  # folders of build/ copied from node_modules
VIEWPORTS = [(1280, 720), (1280, 800)]
TOLERANCE_PX = 2


@pytest.fixture(scope="module")
def deck() -> Path:
    if (
        shutil.which("npm") is None
        and not (ROOT / "slides" / "node_modules" / "reveal.js").exists()
    ):
        pytest.skip(
            "npm is not installed: it fetches reveal.js and KaTeX for the deck "
            "(apt-get install npm)"
        )
    out = subprocess.run(
        [sys.executable, "slides/build.py"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return BUILD / "index.html"


@pytest.fixture(scope="module")
def browser(deck):
    if CHROMIUM is None:
        pytest.skip(
            "Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------- files


def local_references(page: Path) -> set[Path]:
    """The files PAGE loads, directly (src, href) or through its stylesheets (url(), @import)."""
    text = page.read_text()
    urls = (
        re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", text)
        if page.suffix == ".html"
        else []
    )
    urls += re.findall(r"""url\(\s*['"]?([^'")]+?)['"]?\s*\)""", text) + re.findall(
        r"""@import\s+['"]([^'"]+)['"]""", text
    )
    found = set()
    for url in urls:
        if url.startswith(("data:", "http:", "https:", "//", "#", "mailto:")):
            continue
        target = (page.parent / re.split(r"[?#]", url)[0]).resolve()
        found.add(target)
        if target.suffix == ".css" and target.exists():
            found |= local_references(target)
    return found


def test_built_deck_references_no_remote_file(deck):
    text = deck.read_text()
    for marker in ('src="http', "src='http", 'href="http', "cdn.", "unpkg.com", "jsdelivr"):
        assert marker not in text, marker


def test_the_deck_writes_small_p_values_as_the_notebooks_do(deck):
    assert "p = 0.000" not in deck.read_text()  # "p < 0.001", as kdlib.results prints it


def test_the_deck_shows_every_committed_full_run_and_where_it_ran(deck):
    from kdlib import results

    text = deck.read_text()
    records = results.load(ROOT / "results" / "full")
    assert records  # 00 and 01 have run at full
    for r in records:
        where = ", ".join(r["machine"]["accelerators"]) or f"{r['machine']['cpu_cores']}-core CPU"
        assert f"record: {r['notebook']} · profile full" in text, r["notebook"]
        assert f"{where}, {r['machine']['backend']}, {r['machine']['dtype_policy']}" in text


def _build_module():
    """slides/build.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("slides_build", ROOT / "slides" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


def test_a_full_slide_without_its_run_says_so(tmp_path):
    build = _build_module()
    html = build.render_slide("::table full/05", {}, tmp_path)
    assert "no full-profile run of notebook 05 is committed yet" in html


def test_a_full_figure_is_drawn_from_the_full_record(tmp_path):
    build = _build_module()
    recs = build.records()
    html = build.render_slide("::figure full/01", recs, tmp_path)
    assert (tmp_path / "figure_full_01.png").stat().st_size > 0
    assert 'src="figures/figure_full_01.png"' in html
    assert "profile full" in html and "profile cpu" not in html
    cpu = build.render_slide("::figure 01", recs, tmp_path)
    assert "profile cpu" in cpu and "profile full" not in cpu


def test_build_vendors_only_the_files_the_deck_loads(deck):
    """Every copied reveal.js/KaTeX file is loaded by index.html or its CSS (licences apart), and
    every file they load is there. Measured with reveal.js 5.2.1 and KaTeX 0.16.22: 1.24 MB in 35
    files (scripts 0.47, CSS 0.08, KaTeX's woff2 fonts 0.26, the theme's woff fonts 0.43, licences
    0.01); copying both packages whole was 9.0 MB. The ceiling leaves room for patch releases, not
    for a second copy of the fonts or another theme.
    """
    referenced = local_references(deck)
    vendored = {
        p.resolve() for folder in VENDORED for p in (BUILD / folder).rglob("*") if p.is_file()
    }
    missing = sorted(str(p.relative_to(BUILD)) for p in referenced if not p.exists())
    unused = sorted(str(p.relative_to(BUILD)) for p in vendored - referenced if p.name != "LICENSE")
    assert missing == [], f"the deck loads files the build did not copy: {missing}"
    assert unused == [], f"the build copied files the deck never loads: {unused}"
    size = sum(p.stat().st_size for p in vendored)
    others = (
        sum(p.stat().st_size for p in referenced - vendored if p.exists()) + deck.stat().st_size
    )
    print(
        f"vendored reveal.js + KaTeX: {size / 1e6:.2f} MB in {len(vendored)} files; "
        f"whole deck: {(size + others) / 1e6:.2f} MB"
    )
    assert size < 1.5e6


# --------------------------------------------------------------------------- browser

SHOW_SLIDE = """async (i) => {
  Reveal.slide(i);
  const slide = Reveal.getCurrentSlide();
  await Promise.all([...slide.querySelectorAll('img')].map(im => im.decode().catch(() => null)));
  await document.fonts.ready;
  Reveal.layout();
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
}"""

DESCRIBE_SLIDE = """() => { const s = Reveal.getCurrentSlide();
  const imgs = [...s.querySelectorAll('img')];
  return {text: s.innerText.trim().length,
          images: imgs.length,
          loaded: imgs.every(im => im.complete && im.naturalWidth > 0),
          missing: s.querySelectorAll('.missing').length,
          mathErrors: s.querySelectorAll('.katex-error').length,
          rawMath: s.innerText.includes(String.fromCharCode(92) + '(')
                   || s.innerText.includes('$$')}; }"""

# Everything drawn inside the current slide must lie inside the box reveal.js gives the slide: the
# .slides element, a fixed 960×700 that reveal scales to the window, so its client rect is the
# slide as shown. An element's box counts as far as its clipping ancestors let it show (KaTeX clips
# its own stretchy SVGs); a scroll or clip container outside KaTeX must not hide content either.
# The tolerance is in screen pixels; overflows are reported in slide pixels, on the outermost
# element that overflows (a KaTeX formula as a whole, with its TeX).
OVERFLOWS = """(tolerance) => {
  const slides = document.querySelector('.reveal .slides');
  const box = slides.getBoundingClientRect();
  const scale = box.width / slides.offsetWidth;
  const root = el => el.closest('.katex-display') || el.closest('.katex') || el;
  const shown = el => {
    const r = el.getBoundingClientRect();
    let [left, top, right, bottom] = [r.left, r.top, r.right, r.bottom];
    for (let a = el.parentElement; a && a !== slides; a = a.parentElement) {
      const s = getComputedStyle(a), c = a.getBoundingClientRect();
      if (s.overflowX !== 'visible') {
        left = Math.max(left, c.left); right = Math.min(right, c.right);
      }
      if (s.overflowY !== 'visible') {
        top = Math.max(top, c.top); bottom = Math.min(bottom, c.bottom);
      }
    }
    return {left, top, right, bottom};
  };
  const worst = new Map();
  const note = (el, side, px) => {
    if (px <= tolerance) return;
    const key = root(el), sides = worst.get(key) || {};
    sides[side] = Math.max(sides[side] || 0, px);
    worst.set(key, sides);
  };
  for (const el of Reveal.getCurrentSlide().querySelectorAll('*')) {
    // MathML is for screen readers only
    if (el.closest('.katex-mathml') || !el.checkVisibility()) continue;
    const r = shown(el);
    if (r.right - r.left <= 0 || r.bottom - r.top <= 0) continue;  // draws nothing (KaTeX struts)
    note(el, 'left', box.left - r.left); note(el, 'right', r.right - box.right);
    note(el, 'top', box.top - r.top); note(el, 'bottom', r.bottom - box.bottom);
    if (el.closest('.katex')) continue;  // KaTeX hides the tails of its stretchy SVGs on purpose
    const s = getComputedStyle(el);
    const [dx, dy] = [el.scrollWidth - el.clientWidth, el.scrollHeight - el.clientHeight];
    if (s.overflowX !== 'visible') note(el, 'hidden across', dx * scale);
    if (s.overflowY !== 'visible') note(el, 'hidden down', dy * scale);
  }
  const text = el => {
    const tex = el.matches('.katex-display, .katex') && el.querySelector('annotation');
    return (tex ? tex.textContent : el.innerText).replace(/\\s+/g, ' ').trim().slice(0, 60);
  };
  const keys = [...worst.keys()];
  const outermost = keys.filter(o => !keys.some(p => p !== o && p.contains(o)));
  const outer = new Map();  // each overflow is reported on its outermost overflowing ancestor
  for (const [el, sides] of worst) {
    const top = outermost.find(o => o.contains(el));
    const merged = outer.get(top) || {};
    for (const [side, px] of Object.entries(sides)) merged[side] = Math.max(merged[side] || 0, px);
    outer.set(top, merged);
  }
  const cls = el => el.className ? ` class="${el.className}"` : '';
  const tag = el => `<${el.tagName.toLowerCase()}${cls(el)}>`;
  const by = sides => Object.entries(sides)
    .map(([side, px]) => `${side} by ${Math.round(px / scale)} px`).join(', ');
  return [...outer].map(([el, sides]) => `${tag(el)} "${text(el)}" overflows ${by(sides)}`);
}"""


def open_deck(browser, deck: Path, width: int, height: int):
    """A page showing the deck at WIDTH×HEIGHT, and the lists of the URLs it requested and
    failed to load."""
    page = browser.new_page(viewport={"width": width, "height": height})
    requests, failures = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failures.append(r.url))
    page.goto(deck.as_uri())
    page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30000)
    return page, requests, failures


def slide_count() -> int:
    return json.loads((BUILD / "slides.json").read_text())["slides"]


def test_every_slide_renders_offline_in_chromium(browser, deck):
    expected = slide_count()
    page, requests, failures = open_deck(browser, deck, 1280, 800)
    assert page.evaluate("Reveal.getTotalSlides()") == expected
    figure_slide = None
    for i in range(expected):
        page.evaluate(SHOW_SLIDE, i)
        slide = page.evaluate(DESCRIBE_SLIDE)
        assert slide["text"] > 0, f"slide {i + 1} is empty"
        assert slide["loaded"], f"slide {i + 1}: an image did not load"
        assert slide["missing"] == 0, f"slide {i + 1} lacks a record"
        assert slide["mathErrors"] == 0, f"slide {i + 1}: KaTeX could not render"
        assert not slide["rawMath"], f"slide {i + 1} shows unrendered TeX"
        if i == 0:
            page.screenshot(path=str(BUILD / "screenshot_title.png"))
        if slide["images"] and figure_slide is None:
            figure_slide = i
            page.screenshot(path=str(BUILD / "screenshot_figure.png"))
    assert page.evaluate("document.querySelectorAll('.katex').length") > 0  # the maths rendered
    page.close()
    assert figure_slide is not None
    remote = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    assert remote == [], f"requests left the machine: {remote}"
    assert failures == []
    assert (BUILD / "screenshot_title.png").stat().st_size > 0 and (
        BUILD / "screenshot_figure.png"
    ).stat().st_size > 0


@pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_no_slide_overflows_its_slide(browser, deck, width, height):
    expected = slide_count()
    page, _, failures = open_deck(browser, deck, width, height)
    problems = []
    for i in range(expected):
        page.evaluate(SHOW_SLIDE, i)
        found = page.evaluate(OVERFLOWS, TOLERANCE_PX)
        if found:
            shot = BUILD / f"overflow_{width}x{height}_slide{i + 1:02d}.png"
            page.screenshot(path=str(shot))
            problems += [f"slide {i + 1}/{expected}: {f} ({shot.name})" for f in found]
    page.close()
    assert failures == []
    assert problems == [], f"content overflows its slide at {width}×{height}:\n" + "\n".join(
        problems
    )
