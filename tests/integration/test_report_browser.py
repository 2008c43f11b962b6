"""The HTML run reports, the history page and the service's dashboard, opened in a real headless Chromium (Debian's
package): no console errors, no network, charts with data points, and a screenshot of each."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import httpx
import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.demo import run_demo
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
    assert len(re.findall(r'class="point"', dom)) >= 8  # nDCG@k for new, champion and legacy
    assert len(re.findall(r'class="bar"', dom)) >= 8 + 2  # eight feature weights, two groups

    history, criteria = write_history(demo_home)
    assert [c["status"] for c in criteria][1] == "met"  # latency
    dom = check_page(history.as_uri(), tmp_path, "history.png")
    assert len(re.findall(r'data-series="new model"', dom)) == 4
    assert len(re.findall(r'data-series="legacy"', dom)) == 4
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
        assert len(re.findall(r'class="point"', dom)) >= 12
        linked = re.search(r'href="(runs/[0-9-]+/report.html)"', dom)
        assert linked and httpx.get(f"{url}/ltr/{linked.group(1)}").status_code == 200
        assert httpx.get(f"{url}/ltr/runs/../../etc/report.html").status_code == 404
