"""`tdb report`: one self-contained HTML file, opened in headless Chromium without console errors, every section
shown (page text from the rendered DOM, a screenshot, every embedded image decoded by the browser).

CI installs Chromium with `apt-get install -y chromium` (Debian's package); without it the browser tests skip.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.report import SECTIONS
from taskonomy_db.tree import PAPER_GROUPS
from taskonomy_db.workspace import Workspace

from .conftest import PUBLISHED, write_synthetic_release

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (CI installs it: apt-get install -y chromium)"
)
# Console messages reach stderr as `...:INFO:CONSOLE:12] "message", source: file:///... (12)` at every level.
CONSOLE_LINE = re.compile(r":CONSOLE(?::\d+)?\]|:CONSOLE\(\d+\)\]")
IMAGE_PROBE = (
    "<script>window.addEventListener('load', () => {"
    " const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;"
    " console.log('tdb-images ' + document.images.length + ' broken ' + broken); });</script>"
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE_LINE.search(line)]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.chunks.append(data)


def page_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return " ".join(" ".join(parser.chunks).split())


@pytest.fixture(scope="module", params=["synthetic", "published"])
def report(request, tmp_path_factory) -> Path:
    """The report on the paper's 16k release where it is here, and always on a synthetic release in the same
    layout (tests/conftest.py), so CI, which has no published data, still builds and opens a report."""
    if request.param == "published" and not PUBLISHED.is_dir():
        pytest.skip(f"the paper's published data is not at {PUBLISHED}")
    release = PUBLISHED
    if request.param == "synthetic":
        source_only = {"colorization", "inpainting", "jigsaw", "random"}
        release = write_synthetic_release(tmp_path_factory.mktemp("release"), PAPER_GROUPS, source_only, seed=19)
    root = tmp_path_factory.mktemp("report") / "ws"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(root), "--name", "report-test"]).exit_code == 0
    result = runner.invoke(cli, ["import-published", str(release), "--data", "16k", "-w", str(root)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        ["report", "--budgets", "2,3", "--max-order", "2", "--sweep-budget", "3", "-w", str(root)],
    )
    assert result.exit_code == 0, result.output
    return Workspace.open(root).path("reports", "report.html")


def test_report_is_self_contained(report):
    text = report.read_text()
    for key, title in SECTIONS:
        assert f'<section id="{key}">' in text and title in text
    # Nothing to fetch: no script, no stylesheet link, every image a data URI that decodes to a non-empty PNG.
    assert "<script" not in text and "<link" not in text and not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(sources) == 5  # matrix, tree, two taxonomy graphs, significance
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(source.split(",", 1)[1])), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100


@requires_chromium
def test_console_check_catches_errors(tmp_path):
    """The detector itself: a page with a console error and an uncaught exception is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    done = chromium(tmp_path, "--dump-dom", page.as_uri())
    messages = console_messages(done.stderr)
    assert any("boom" in m for m in messages) and any("notDefined" in m for m in messages)


@requires_chromium
def test_report_opens_in_chromium_with_every_section(report, tmp_path):
    done = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_messages(done.stderr) == []
    text = page_text(done.stdout)
    for _key, title in SECTIONS:
        assert title in text
    assert "Taskonomy report: report-test" in text and "published_16k" in text
    assert "Budget 2, max order 2" in text and "Budget 3, max order 2" in text
    assert "Gain, max order 1" in text and "Quality, max order 2" in text
    assert "depth_zbuffer" in text and "percentile" in text

    # Every image decodes in the browser: a probe appended to a copy counts images that failed to render.
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    done = chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert [m for m in console_messages(done.stderr) if "tdb-images" not in m] == []
    assert any('"tdb-images 5 broken 0"' in m for m in console_messages(done.stderr)), done.stderr[-2000:]

    screenshot = tmp_path / "report.png"
    done = chromium(
        tmp_path, "--hide-scrollbars", "--window-size=1400,5000", f"--screenshot={screenshot}", report.as_uri()
    )
    assert console_messages(done.stderr) == []
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (5000, 1400)
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank page


def test_report_command_has_help_with_example():
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
