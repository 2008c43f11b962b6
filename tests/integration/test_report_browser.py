"""The HTML run reports, the history page and the service's dashboard, opened in a real headless Chromium (Debian's
package): no console errors, no network, charts with data points, and a screenshot of each."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest

from ltr_pipeline.compare import LATENCY_BINS_MS, compare_versions, write_comparison
from ltr_pipeline.config import Settings
from ltr_pipeline.demo import run_demo
from ltr_pipeline.guard import feature_reference
from ltr_pipeline.record import to_builtins
from ltr_pipeline.registry import MODEL_FILE, WEIGHTS_FILE, ModelRegistry
from ltr_pipeline.report import write_history
from ltr_pipeline.simulate import SimConfig
from tests.helpers import REPO, service_process

SCREENSHOTS = REPO / "tests" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--window-size=1100,2200"]


def chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "Chromium is missing: `make test` installs Debian's chromium (scripts/system-deps)"
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if ("CONSOLE" in line and ("ERROR" in line or "Uncaught" in line))
            or ("net::ERR_" in line and "ERR_ABORTED" not in line)]


def check_page(url: str, tmp: Path, shot: str) -> str:
    """Open `url`: return its rendered DOM after checking the console and taking a screenshot."""
    dom = chromium(url, tmp, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    picture = chromium(url, tmp, f"--screenshot={SCREENSHOTS / shot}")
    assert picture.returncode == 0 and (SCREENSHOTS / shot).stat().st_size > 10_000
    assert console_errors(picture.stderr) == []
    assert not re.search(r'(src|href)="https?://', dom.stdout), "the page must open offline"
    return dom.stdout


class _Plotted(HTMLParser):
    """Counts what the charts plot (ltr_pipeline.charts): one `<use>` marker per point inside a `series-<chart>-<name>`
    group, and one `bar-<chart>-<name>` group per bar."""

    def __init__(self) -> None:
        super().__init__()
        self.points: Counter[str] = Counter()
        self.bars = 0
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        gid = dict(attrs).get("id") or ""
        if tag == "g":
            self._stack.append(gid)
            self.bars += gid.startswith("bar-")
        series = next((g for g in reversed(self._stack) if g.startswith("series-")), None)
        if tag == "use" and series:
            self.points[series.split("-", 2)[2]] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._stack:
            self._stack.pop()


def plotted(dom: str) -> _Plotted:
    parser = _Plotted()
    parser.feed(dom)
    return parser


def test_the_console_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<html><body><script>console.error("boom"); undefinedCall();</script></body></html>')
    assert console_errors(chromium(page.as_uri(), tmp_path, "--dump-dom").stderr)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("demo")
    settings = Settings(home=home, num_boost_round=60)
    run_demo(settings, history_days=6, days=4, start=date(2026, 11, 1), sim=SimConfig(cases_per_day=120))
    return settings


def test_run_report_and_history_open_offline_with_plotted_data(demo_home: Settings, tmp_path: Path) -> None:
    run_pages = sorted(demo_home.runs_path.glob("*/report.html"))
    assert len(run_pages) == 4
    dom = check_page(run_pages[-1].as_uri(), tmp_path, "run-report.png")
    assert "Quality gate" in dom and "Exposure per group" in dom
    charts = plotted(dom)
    assert sum(charts.points.values()) >= 8  # nDCG@k for new, champion and legacy
    assert charts.bars >= 8 + 2  # eight feature weights, two groups

    history, criteria = write_history(demo_home)
    assert [c["status"] for c in criteria][1] == "met"  # latency
    dom = check_page(history.as_uri(), tmp_path, "history.png")
    charts = plotted(dom)
    assert charts.points["new-model"] == 4 and charts.points["legacy"] == 4
    assert "Success criteria" in dom and dom.count('class="met"') + dom.count('class="notmet"') >= 3


def test_service_dashboard_answers_with_live_state(demo_home: Settings, tmp_path: Path) -> None:
    env = {"LTR_HOME": str(demo_home.home), "LTR_POLL_SECONDS": "0.2"}
    with service_process(env) as url:
        for _ in range(20):
            httpx.post(f"{url}/ltr/rank", json={"candidates": [{"lawyer_id": "a", "features": {"A": 1}},
                                                                {"lawyer_id": "b", "features": {"A": 0}}]})
        dom = check_page(f"{url}/ltr/dashboard", tmp_path, "dashboard.png")
        assert "Service, live" in dom and "fallback rate" in dom
        assert "<td>predictions</td><td>20</td>" in dom and "<td>fallbacks</td><td>0</td>" in dom
        assert sum(plotted(dom).points.values()) >= 12
        linked = re.search(r'href="(runs/[0-9-]+/report.html)"', dom)
        assert linked and httpx.get(f"{url}/ltr/{linked.group(1)}").status_code == 200
        assert httpx.get(f"{url}/ltr/runs/../../etc/report.html").status_code == 404


def test_comparison_page_opens_offline_with_its_drift_section(demo_home: Settings, tmp_path: Path) -> None:
    """`ltr compare` of a copy of the live model that learned from another scale of data against the live model:
    every feature flagged as drifted, latency histograms of both. Last in this module: it publishes a version."""
    registry = ModelRegistry.from_settings(demo_home)
    live = registry.live_version()
    assert live is not None
    bundle = registry.load(live)
    names = list(demo_home.feature_names)
    other_scale = to_builtins(feature_reference(np.random.default_rng(0).random((3000, len(names))) * 0.01, names))
    skewed = registry.publish({MODEL_FILE: bundle.model_text.encode(), WEIGHTS_FILE: b'{"A": 1.0}'},
                              {**bundle.metadata, "reference": other_scale})
    page = write_comparison(demo_home, compare_versions(demo_home, skewed, live))
    dom = check_page(page.as_uri(), tmp_path, "compare.png")
    check_page(f"{page.as_uri()}#drift", tmp_path, "compare-drift.png")
    assert "Ranking quality on the same holdout" in dom and "95% interval" in dom
    assert dom.count(">drifted<") == len(names)
    assert plotted(dom).bars == len(names) + 2 * (len(LATENCY_BINS_MS) + 1)  # PSI per feature; two histograms
