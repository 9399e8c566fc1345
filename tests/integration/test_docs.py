"""The docs site: `mkdocs build --strict` (references generated from the code by docs/hooks.py),
then every page opened in a real headless Chromium over HTTP: it loads, its internal links and
anchors resolve, its images load, and the CLI reference lists every command of the Typer app."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium + chromium-driver: make setup")


def typer_commands(app, prefix: str = "platform") -> set[str]:
    """Every leaf command registered on the Typer app, read from Typer's own registry (not click)."""
    out = set()
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        out.add(f"{prefix} {name}")
    for group in app.registered_groups:
        out |= typer_commands(group.typer_instance, f"{prefix} {group.name}")
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "-q",
                          "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, f"mkdocs build --strict failed:\n{res.stdout}\n{res.stderr}"
    return out


@pytest.fixture(scope="module")
def server(site: Path):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _page_path(site: Path, url_path: str) -> Path | None:
    """The built file a site URL path serves, or None."""
    target = site / url_path.lstrip("/")
    if url_path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def test_every_page_loads_with_working_links_and_images(site, server, browser):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html"))
    assert len(pages) >= 20, pages  # home, concepts, guides, operations, references
    ids: dict[str, set[str]] = {}
    anchors: list[tuple[str, str, str]] = []  # (from page, target path, fragment)
    problems: list[str] = []
    host = urlparse(server).netloc
    for page in pages:
        url_path = "/" + page[: -len("index.html")]
        browser.get(server + url_path)
        state = browser.execute_script(
            "return {ready: document.readyState, title: document.title,"
            " h1: [...document.querySelectorAll('article h1')].map(e => e.textContent.trim()),"
            " ids: [...document.querySelectorAll('[id]')].map(e => e.id),"
            " links: [...document.querySelectorAll('a[href]')].map(a => a.href),"
            " images: [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}))}")
        ids[url_path] = set(state["ids"])
        if state["ready"] != "complete" or not state["title"] or not state["h1"]:
            problems.append(f"{url_path}: did not load as a page ({state['ready']}, title {state['title']!r})")
        for img in state["images"]:
            if not img["ok"]:
                problems.append(f"{url_path}: broken image {img['src']}")
        for href in state["links"]:
            parsed = urlparse(href)
            if parsed.scheme not in ("http", "https") or parsed.netloc != host:
                continue  # external links are not followed (no network here)
            base, fragment = urldefrag(href)
            target = urlparse(base).path
            if _page_path(site, target) is None:
                problems.append(f"{url_path}: broken link {href}")
            elif fragment and target.endswith("/"):
                anchors.append((url_path, target, fragment))
    for source, target, fragment in anchors:
        if target in ids and fragment not in ids[target]:
            problems.append(f"{source}: link to {target}#{fragment}: no such anchor")
    assert not problems, "\n".join(problems)


def test_cli_reference_lists_every_command_and_option(site, server, browser):
    import typer

    from lorafleet.platform.cli import app

    expected = typer_commands(app)
    assert {"platform train", "platform registry push", "platform promote"} <= expected
    browser.get(server + "/reference/cli/")
    headings = set(browser.execute_script(
        "return [...document.querySelectorAll('article h2')].map(e => e.firstChild.textContent.trim())"))
    missing = expected - headings
    assert not missing, f"CLI commands missing from the reference: {sorted(missing)}"
    text = browser.find_element("css selector", "article").text
    click_app = typer.main.get_command(app)
    ctx = click_app.context_class(click_app)
    train = click_app.get_command(ctx, "train")
    for param in train.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert opt in text, f"option {opt} of platform train missing from the CLI reference"
