"""report.html: self-contained, escaped, and rendering (with working filters) in real Chromium.

The browser tests drive Debian's `chromium` headless (`make browser` installs it where apt-get
may run): `--dump-dom` gives the DOM after the page's script ran, `--enable-logging=stderr`
shows every console message (errors and CSP refusals included), `--screenshot` proves it paints.
Without a Chromium binary they skip locally, naming what is missing, and fail under CI=true.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ftci.report import write_report
from ftci.report.build import build_report
from tests.helpers.report_repo import FIXTURES, fixture_json, hostile_results, make_repo
from tests.helpers.skips import skip_or_fail

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


class Dom(HTMLParser):
    """Just enough of a DOM: elements with attributes, their parents, and text per element."""

    VOID = {"meta", "br", "input", "img", "link", "hr", "circle", "rect", "line", "polyline"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, Any]] = []
        self.stack: list[dict[str, Any]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "parents": [e["tag"] + "#" + (
            e["attrs"].get("id") or "") for e in self.stack], "text": ""}
        self.elements.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index]["tag"] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element["text"] += data

    def find(self, tag: str, inside: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.elements if e["tag"] == tag
                and (inside is None or any(p.endswith("#" + inside) for p in e["parents"]))]

    def by_id(self, ident: str) -> dict[str, Any]:
        return next(e for e in self.elements if e["attrs"].get("id") == ident)


def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    message = ("no Chromium binary (looked for " + ", ".join(BROWSERS) + "): the HTML report's "
               "browser test needs one; `make browser` installs Debian's chromium")
    skip_or_fail(message)


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                           "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=90, check=False)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture
def html_report(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo")
    report = build_report(repo, data_check=FIXTURES / "data-check.json",
                          data_diff=FIXTURES / "data-diff.json", env={})
    return write_report(report).html_path


def test_html_is_self_contained(html_report: Path) -> None:
    text = html_report.read_text(encoding="utf-8")
    dom = Dom(text)
    assert dom.find("title")[0]["text"] == "ftci report: ✅ ftci: all 6 gates pass · data okay"
    assert len(dom.find("tr", inside="gates")) == 7  # header + 6 gates
    assert len(dom.find("script")) == 1 and not dom.find("link") and not dom.find("img")
    assert not [e for e in dom.elements if "src" in e["attrs"] or "href" in e["attrs"]]
    csp = next(e for e in dom.find("meta") if e["attrs"].get("http-equiv"))
    assert "default-src 'none'" in (csp["attrs"]["content"] or "")
    assert len(dom.find("polyline", inside="loss-curve")) == 2  # train and val


def test_hostile_text_stays_text(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", hostile_results())
    html_path = write_report(build_report(repo, env={})).html_path
    dom = Dom(html_path.read_text(encoding="utf-8"))
    assert len(dom.find("script")) == 1 and not dom.find("img") and not dom.find("b", "gates")
    items = dom.by_id("items")["text"]
    assert "<img src=x onerror=alert(1)>" in items  # shown as text, not parsed as a tag
    assert "<script>document.title='pwned'</script>" in items
    assert "at least 0.75 | <b>bold</b>" in dom.by_id("gates")["text"]


def test_report_renders_in_headless_chromium(html_report: Path, tmp_path: Path) -> None:
    done = run_chromium(tmp_path, "--dump-dom", html_report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom(done.stdout)
    assert dom.find("title")[0]["text"].startswith("ftci report: ✅ ftci: all 6 gates pass")
    assert len(dom.find("tr", inside="gates")) == 7
    assert dom.by_id("f-count")["text"] == "20 of 20 items shown"  # the script ran
    assert console_messages(done.stderr) == []  # no errors, no CSP refusals
    shot = tmp_path / "report.png"
    done = run_chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}",
                        html_report.as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a painted page, not a blank one


@pytest.mark.parametrize(("fragment", "expected"), [
    ("failed", lambda item: item["score"] < 1),
    ("regressed", lambda item: item["score"] < item.get("baseline_score", -1)),
    ("label=card_arrival", lambda item: item["expected"] == "card_arrival"),
    ("failed&label=card_arrival", lambda item: item["score"] < 1
     and item["expected"] == "card_arrival"),
])
def test_filters_work_in_the_browser(html_report: Path, tmp_path: Path, fragment: str,
                                     expected: Any) -> None:
    items = next(g for g in fixture_json("results.json")["gates"]
                 if any("baseline_output" in item for item in g["items"]))["items"]
    want = sum(bool(expected(item)) for item in items)
    assert 0 < want < len(items)
    done = run_chromium(tmp_path, "--dump-dom", f"{html_report.as_uri()}#{fragment}")
    dom = Dom(done.stdout)
    rows = [row for row in dom.find("tr", inside="items") if "data-failed" in row["attrs"]]
    assert len(rows) == len(items)
    shown = [row for row in rows if "hidden" not in row["attrs"]]
    assert len(shown) == want
    assert dom.by_id("f-count")["text"] == f"{want} of {len(items)} items shown"
    assert console_messages(done.stderr) == []


def test_hostile_text_does_not_run_in_the_browser(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", hostile_results())
    html_path = write_report(build_report(repo, env={})).html_path
    done = run_chromium(tmp_path, "--dump-dom", html_path.as_uri())
    dom = Dom(done.stdout)
    assert "pwned" not in dom.find("title")[0]["text"]
    assert len(dom.find("script")) == 1 and not dom.find("img")
    assert console_messages(done.stderr) == []
