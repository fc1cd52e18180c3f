"""Build the lecture deck: slides/deck.md -> slides/build/index.html (reveal.js, offline).

The deck's Markdown holds the words; its figures and tables are regenerated here from the
committed records under results/ with kdlib.plots, so the slides cannot disagree with the
notebooks. reveal.js and KaTeX come from the npm registry (slides/package.json) and are copied
next to index.html: the built deck loads nothing from the internet and works opened from disk.
Only the files index.html loads are copied (STYLESHEETS, SCRIPTS, and what their CSS imports,
fonts in one format each), with the licences that must travel with them.

Directives in deck.md (each on its own line):
    ::figure NAME       a figure made by FIGURES[NAME] from the records
    ::table NAME        a table made by TABLES[NAME] from the records
NAME is a notebook's number (its cpu record); "full/NN" takes notebook NN's full-profile record
instead (its figure by FIGURES[NN], its table by table_full).
A line of three dashes separates slides; a slide starting with "<!-- section -->" gets a title
style. Run with `make slides`.
"""

from __future__ import annotations

import html
import json
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mistune
import numpy as np

from kdlib import pages, plots, results

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
RECORDS = results.REPO / "results"


def records() -> dict[str, dict]:
    """The committed records, by notebook name; the full profile's as "full/<notebook>"."""
    found = {r["notebook"]: r for r in results.load(RECORDS)}
    if (RECORDS / "full").is_dir():
        found.update({f"full/{r['notebook']}": r for r in results.load(RECORDS / "full")})
    return found


def _errors(values) -> str:
    return results.mean_std(values, digits=1) if len(values) > 1 else f"{values[0]:.0f}"


def _verdict(a, b) -> str:
    """The course's test of a difference (kdlib.results.compare), in a few words."""
    c = results.compare(a, b)
    return "n/a" if c.p is None else f"{'yes' if c.beyond_noise else 'no'} ({c.p_text})"


def _stated(entry: dict) -> str:
    """The verdict a full run recorded for one comparison of a family (its
    ``metrics.comparisons``): by its Holm-adjusted p-value (kdlib.results.compare_all), or
    the raw one where the record holds no adjusted one."""
    p, q = entry["p"], entry.get("p_holm")
    if p is None:
        return "n/a"
    nan = float("nan")  # only the p-values decide; results.Comparison holds the rule
    beyond = results.Comparison(nan, nan, nan, p, "recorded", p_holm=q).beyond_noise
    said = results.p_text(p) + ("" if q is None else f", Holm {results.p_text(q)[2:]}")
    return f"{'yes' if beyond else 'no'} ({said})"


def _label(r: dict) -> str:
    names = {
        "mnist": "MNIST",
        "fashion_mnist": "Fashion-MNIST",
        "cifar10": "CIFAR-10",
        "svhn": "SVHN",
    }
    data = names.get(r["dataset"], r["dataset"])
    if r["requested_dataset"] != r["dataset"]:
        data += f", stand-in for {names.get(r['requested_dataset'], r['requested_dataset'])}"
    return data


# --------------------------------------------------------------------------- figures


def fig_soft_targets(_):
    logits = np.array([1.0, -2.0, 9.0, 5.0, -1.0, 0.5, -3.0, 6.0, 1.5, -0.5])
    return plots.soft_targets(logits, [1, 2, 4, 10, 20])


def fig_00(r):
    curves = {f"student {k}": v for k, v in r["metrics"]["curves"].items()}
    return plots.curves(curves, ylabel=f"validation accuracy ({_label(r)})")


def fig_01(r):
    curves = {f"2×800 {k}": v for k, v in r["metrics"]["hinton_curves"].items()}
    return plots.curves(curves, ylabel=f"validation accuracy ({_label(r)})")


def fig_02(r):
    curves = {f"student {k}": v for k, v in r["metrics"]["curves"].items()}
    return plots.curves(curves, ylabel=f"validation accuracy ({_label(r)})")


def fig_03(r):
    curves = {  # the record keeps each seed's validation accuracy per epoch
        k: [{"val_accuracy": v} for v in seeds] for k, seeds in r["metrics"]["curves"].items()
    }
    return plots.curves(curves, ylabel=f"validation accuracy ({_label(r)})")


def fig_04(r):
    m = r["metrics"]
    points = {
        f"from {name}": (m["parameters"][name] / 1e6, m["students"][name])
        for name in m["teacher_accuracy"]
    }
    return plots.accuracy_vs_size(
        points,
        xlabel="parameters of the student's teacher (M)",
        ylabel=f"plane2's test accuracy ({_label(r)})",
        baselines={"student alone": m["students"]["alone"]},
    )


def fig_05(r):
    m = r["metrics"]
    points = {
        f"{name} {mode}": (m["sizes_mb"][name], accs)
        for name, modes in m["students"].items()
        for mode, accs in modes.items()
    }
    points["teacher"] = (m["sizes_mb"]["teacher"], [m["teacher_accuracy"]])
    return plots.accuracy_vs_size(
        points,
        xlabel="weights at their bit width (MB, arithmetic)",
        ylabel=f"test accuracy ({_label(r)})",
    )


FIGURES = {
    "soft_targets": fig_soft_targets,
    "00": fig_00,
    "01": fig_01,
    "02": fig_02,
    "03": fig_03,
    "04": fig_04,
    "05": fig_05,
}


# --------------------------------------------------------------------------- tables


def _trio(teacher: str, teacher_accuracy: float, alone, distilled):
    """A full run of notebook 00: teacher, student alone and student distilled, with the paired
    test's verdict."""
    return [
        {"model": teacher, "test accuracy": f"{teacher_accuracy:.4f}", "beyond noise?": ""},
        {"model": "student alone", "test accuracy": results.mean_std(alone), "beyond noise?": ""},
        {
            "model": "student distilled",
            "test accuracy": results.mean_std(distilled),
            "beyond noise?": _verdict(distilled, alone),
        },
    ]


def table_comparisons(r):
    """Every comparison the run recorded (``results.Run.compare``), with the verdict it recorded
    and its role in the run's findings (the paper's effect, its contrast)."""
    m = r["metrics"]
    roles = {label: role for role, label in m.get("findings", {}).items()}
    return [
        {
            "comparison": label + (f" ({roles[label]})" if label in roles else ""),
            "difference": pages.amount(entry),
            "beyond noise?": entry["verdict"],
        }
        for label, entry in m["comparisons"].items()
    ]


def _table_01(m, paper: bool):
    said = m["comparisons"]
    cnn = _verdict(m["cnn_alone_errors"], m["cnn_distilled_errors"])
    rows = [
        ("ensemble of 5 CNNs", [m["ensemble_errors"]], "43", ""),
        ("CNN alone", m["cnn_alone_errors"], "", ""),
        ("CNN distilled from the ensemble", m["cnn_distilled_errors"], "56", cnn),
        ("2×1200 teacher", [m["hinton_teacher_errors"]], "67", ""),
        ("2×800 alone", m["hinton_alone_errors"], "146", ""),
        ("2×800 distilled, T = 20", m["hinton_distilled_errors"], "74", _stated(said["hinton"])),
        ("2×800 alone, jittered images", m["hinton_alone_jittered_errors"], "", ""),
        (
            "2×800 distilled, jittered images",
            m["hinton_distilled_jittered_errors"],
            "",
            _stated(said["hinton_jittered"]),
        ),
    ]
    table = []
    for name, errors, published, verdict in rows:
        row = {"model": name, "test errors": _errors(errors)}
        if paper:
            row["paper / notes"] = published
        row["fewer errors, beyond noise?"] = verdict
        table.append(row)
    return table


def _shipped_rows(shipped: dict) -> list[dict]:
    rows = []
    for model, formats in shipped.items():
        for fmt, entry in formats.items():
            if not isinstance(entry, dict):
                continue
            latency = entry["latency_ms"]["batch_1"]
            rows.append(
                {
                    "model": model,
                    "file": fmt,
                    "kB": f"{entry['bytes'] / 1000:,.0f}",
                    "test accuracy": f"{entry['accuracy']:.4f}",
                    "ms, batch 1": f"{latency['median']:.3f}",
                }
            )
    return rows


def table_02_shipped(r):
    return _shipped_rows(r["metrics"]["shipped"])


def table_05_shipped(r):
    rows = _shipped_rows(r["metrics"]["shipped"])
    for row in rows:
        arithmetic = r["metrics"]["shipped"][row["model"]]["bit_arithmetic_bytes"]
        row["kB by bit arithmetic"] = f"{arithmetic / 1000:,.0f}"
    return rows


def _full_record(name: str, recs: dict) -> dict | None:
    """The full-profile record a ``full/NN`` directive names (notebook NN's), if it has run."""
    full = {n.removeprefix("full/"): r for n, r in recs.items() if n.startswith("full/")}
    return _record_for(name.removeprefix("full/"), full)


def table_full(record):
    """A full-profile run: notebook 01 against the paper (Hinton et al.) and the TF1 notes, or
    notebook 00's teacher and students."""
    m, number = record["metrics"], record["notebook"][:2]
    if number == "01":
        return [{"notebook": "01", **row} for row in _table_01(m, paper=True)]
    trio = _trio("teacher (CNN)", m["teacher_accuracy"], m["student_alone"], m["student_distilled"])
    return [{"notebook": "00", **row} for row in trio]


TABLES = {
    **{number: table_comparisons for number in ("00", "01", "02", "03", "04", "05")},
    "02_shipped": table_02_shipped,
    "05_shipped": table_05_shipped,
}


def _record_for(name: str, recs: dict) -> dict | None:
    """The cpu record of the notebook a directive names: "02" and "02_shipped" are notebook 02's."""
    number = name.split("_")[0]
    matches = [r for n, r in recs.items() if n.startswith(number)]
    return matches[0] if matches else None


def _html_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _caption(r: dict) -> str:
    source = f"record: {r['notebook']} · profile {r['profile']} · {html.escape(_label(r))}"
    if r["profile"] == "full":  # where it ran matters at the papers' scale
        m = r["machine"]
        where = ", ".join(m["accelerators"]) or f"{m['cpu_cores']}-core CPU"
        source += f" · {html.escape(where)}, {m['backend']}, {m['dtype_policy']}"
    return f'<p class="caption">{source}</p>'


# --------------------------------------------------------------------------- build


def render_directive(kind: str, name: str, recs: dict, figures: Path) -> list[str]:
    """The HTML of one ``::figure NAME`` or ``::table NAME`` line: NAME is a notebook's number,
    ``full/NN`` for its full-profile run, or ``soft_targets``."""
    full = name.startswith("full/")
    if full:
        record = _full_record(name, recs)
    else:
        record = _record_for(name, recs) if name != "soft_targets" else {}
    if record is None:
        missing = (
            f"no full-profile run of notebook {name[5:]} is committed yet"
            if full
            else f"no record for notebook {name} yet: run it (make notebooks)"
        )
        return [f'<p class="missing">{html.escape(missing)}</p>']
    caption = [_caption(record)] if record else []
    if kind == "::table":
        return [_html_table(table_full(record) if full else TABLES[name](record)), *caption]
    path = figures / f"figure_{name.replace('/', '_')}.png"
    FIGURES[name.removeprefix("full/")](record).savefig(path, dpi=110)
    image = f'<img class="figure" src="figures/{path.name}" alt="figure {html.escape(name)}">'
    return [image, *caption]


def render_slide(text: str, recs: dict, figures: Path) -> str:
    """One slide's Markdown with its directives replaced by figures and tables."""
    parts, markdown = [], mistune.create_markdown(escape=False, plugins=["table", "math"])
    chunk: list[str] = []

    def flush():
        if chunk:
            parts.append(markdown("\n".join(chunk)))
            chunk.clear()

    for line in text.splitlines():
        kind, _, name = line.strip().partition(" ")
        if kind in ("::figure", "::table"):
            flush()
            parts.extend(render_directive(kind, name, recs, figures))
        else:
            chunk.append(line)
    flush()
    return "\n".join(parts)


def npm_assets() -> Path:
    """reveal.js and KaTeX from the npm registry (package.json), installed once."""
    modules = HERE / "node_modules"
    if (
        not (modules / "reveal.js" / "dist" / "reveal.js").exists()
        or not (modules / "katex" / "dist").exists()
    ):
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit(
                "npm is needed to fetch reveal.js and KaTeX (apt-get install npm, or see "
                "nodejs.org)"
            )
        subprocess.run(
            [
                npm,
                "ci" if (HERE / "package-lock.json").exists() else "install",
                "--no-audit",
                "--no-fund",
            ],
            cwd=HERE,
            check=True,
        )
    return modules


# What index.html loads, relative to node_modules/ and to build/ alike. KaTeX is rendered by its
# auto-render extension before reveal.js starts (no math plugin: it would load the same files).
STYLESHEETS = (
    "reveal.js/dist/reveal.css",
    "reveal.js/dist/theme/white.css",
    "katex/dist/katex.min.css",
)
SCRIPTS = (
    "reveal.js/dist/reveal.js",
    "reveal.js/plugin/notes/notes.js",
    "katex/dist/katex.min.js",
    "katex/dist/contrib/auto-render.min.js",
)
# MIT (reveal.js, KaTeX and its fonts) and SIL OFL (the theme's Source Sans Pro) ask for these.
LICENSES = (
    "reveal.js/LICENSE",
    "katex/LICENSE",
    "reveal.js/dist/theme/fonts/source-sans-pro/LICENSE",
)
FONT_FORMATS = ("woff2", "woff")  # preferred first; every browser that runs reveal.js 5 reads both
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+?)['"]?\s*\)""")


def one_font_format(css: str) -> str:
    """The stylesheet with each @font-face reduced to one source: woff2, else woff."""

    def face(match: re.Match) -> str:
        block = match.group(1)
        sources = re.findall(
            r"""url\(\s*['"]?([^'")]+?)['"]?\s*\)\s*format\(\s*['"]?([\w-]+)""", block
        )
        usable = [s for s in sources if s[1] in FONT_FORMATS]
        if not usable:
            raise SystemExit(f"no {' or '.join(FONT_FORMATS)} source in @font-face{{{block}}}")
        url, fmt = min(usable, key=lambda s: FONT_FORMATS.index(s[1]))
        rest = re.sub(r"src\s*:[^;}]*;?\s*", "", block).strip()
        return f'@font-face{{src:url({url}) format("{fmt}");{rest}}}'

    return re.sub(r"@font-face\s*\{([^}]*)\}", face, css)


def local_urls(css: str) -> list[str]:
    """The files a stylesheet refers to by url() or @import, without query or fragment."""
    urls = CSS_URL.findall(css) + re.findall(r"""@import\s+['"]([^'"]+)['"]""", css)
    return [
        re.split(r"[?#]", u)[0]
        for u in urls
        if not u.startswith(("data:", "http:", "https:", "//", "#"))
    ]


def vendor(path: str, modules: Path, done: set[str]) -> None:
    """Copy node_modules/PATH to build/PATH; a stylesheet also brings the files it refers to."""
    if path in done:
        return
    done.add(path)
    source, target = modules / path, BUILD / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix != ".css":
        shutil.copyfile(source, target)
        return
    css = one_font_format(source.read_text(encoding="utf-8"))
    target.write_text(css, encoding="utf-8")
    for url in local_urls(css):
        vendor(posixpath.normpath(posixpath.join(posixpath.dirname(path), url)), modules, done)


def vendor_assets(modules: Path) -> None:
    """Copy into build/ the files index.html loads, those their CSS refers to, and the licences."""
    done: set[str] = set()
    for path in STYLESHEETS + SCRIPTS + LICENSES:
        vendor(path, modules, done)


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Knowledge distillation — the kdlib course</title>
{stylesheets}
<style>
.reveal {{ font-size: 30px; }}
.reveal h1 {{ font-size: 1.8em; }} .reveal h2 {{ font-size: 1.25em; }}
.reveal img.figure {{ max-height: 380px; margin: 0.2em auto; }}
.reveal table.results {{ font-size: 0.55em; margin: 0.3em auto; }}
.reveal table.results th, .reveal table.results td {{ padding: 0.15em 0.5em; }}
.reveal p.caption {{ font-size: 0.45em; color: #666; margin: 0.2em; }}
.reveal ul, .reveal ol {{ font-size: 0.8em; }}
.reveal .missing {{ color: #a00; }}
</style>
</head>
<body>
<div class="reveal"><div class="slides">
{slides}
</div></div>
{scripts}
<script>
renderMathInElement(document.querySelector(".reveal .slides"),
  {{ delimiters: [{{left: "$$", right: "$$", display: true}},
                 {{left: "\\\\(", right: "\\\\)", display: false}}] }});
Reveal.initialize({{ hash: true, slideNumber: "c/t", transition: "none", plugins: [RevealNotes] }});
</script>
</body>
</html>
"""


def build() -> Path:
    """Write slides/build/index.html with its figures, reveal.js and KaTeX; return its path."""
    modules = npm_assets()
    if BUILD.exists():
        shutil.rmtree(BUILD)
    figures = BUILD / "figures"
    figures.mkdir(parents=True)
    vendor_assets(modules)
    recs = records()
    sections = []
    for text in (HERE / "deck.md").read_text().split("\n---\n"):
        attrs = ' class="title"' if text.lstrip().startswith("<!-- section -->") else ""
        sections.append(f"<section{attrs}>\n{render_slide(text, recs, figures)}\n</section>")
    index = BUILD / "index.html"
    stylesheets = "\n".join(f'<link rel="stylesheet" href="{path}">' for path in STYLESHEETS)
    scripts = "\n".join(f'<script src="{path}"></script>' for path in SCRIPTS)
    index.write_text(
        TEMPLATE.format(slides="\n".join(sections), stylesheets=stylesheets, scripts=scripts)
    )
    (BUILD / "slides.json").write_text(json.dumps({"slides": len(sections)}))
    print(f"{len(sections)} slides -> {index}")
    return index


if __name__ == "__main__":
    build()
    sys.exit(0)
