"""`ltr soak`: 30 daily cycles with the service and its guard live and five faults injected (fewer cases per day than
the 300 of `ltr soak`'s default, for time). Every fault is met, the skewed model is rolled back automatically within
its day, no healthy version is, and the history page reads all five success criteria as met."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.soak import FAULTS
from ltr_pipeline.storage.local import LocalStore

# A deadline against a hang, not a timing goal: about 2 minutes on a quiet 2-core machine, 7 beside two CPU hogs.
SOAK_DEADLINE = 2700

CASES = 100


def test_a_30_day_soak_with_faults_meets_the_five_success_criteria(tmp_path: Path) -> None:
    home = tmp_path / "soak"
    done = subprocess.run([sys.executable, "-m", "ltr_pipeline.cli", "soak", "--home", str(home), "--days", "30",
                           "--history-days", "14", "--cases-per-day", str(CASES), "--json"],
                          capture_output=True, timeout=SOAK_DEADLINE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = orjson.loads(done.stdout)  # pure JSON: the daily lines went to stderr
    days = {d["fault"]: d for d in result["days"] if d["fault"]}
    assert set(days) == set(FAULTS)

    assert "read the event files instead" in days["broker outage"]["did"]
    outage = days["registry outage during publish"]
    assert outage["decision"] == "publish_failed" and "stayed live" in outage["did"]
    assert outage["recovery"].startswith("next run published")
    assert days["malformed events"]["did"].startswith("200 events quarantined")
    assert days["service restart"]["recovery"].endswith("s to serve again")

    skewed = days["skewed model"]
    assert skewed["decision"] == "published"  # the offline gate could not see it
    [acted] = skewed["guard"]
    assert acted["action"] == "rolled_back" and acted["cases"] <= CASES and "feature drift" in acted["failed"]
    registry = ModelRegistry(LocalStore(home / "registry" / "ltr"))
    rollbacks = [a for a in registry.audit_log() if a["action"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["automatic"] is True  # no false alarm on any healthy version
    assert list(registry.bad_versions()) == [acted["version"]]

    assert [c["status"] for c in result["criteria"]] == ["met"] * 5
    page = Path(result["history"]).read_text()
    assert page.count('<span class="met">met</span>') == 5 and "guard (automatic)" in page
