"""The guard: watches the live model against the version live before it, and rolls back a bad one by itself.

A model can pass the offline gate and still misbehave in production: a feature scaled differently by the clients
than in the events it learned from (training/serving skew), scores that are not finite for some inputs, slowness, or
clients who stop engaging. Every LTR_GUARD_SECONDS the guard reads what production left since the live version went
live (its recommendation and feedback events, and the service's latency histogram when it runs inside the service)
and checks, in this order:

- fallback rate: rankings of the live version answered by the legacy sum (scoring errors, non-finite scores);
- latency p95 of ranking requests since the version went live (inside the service only);
- feature drift: the population stability index (PSI) of each feature in the requests against the training rows of
  the version (their deciles, recorded in its metadata as `reference`);
- engagement: cases with a positive action, against the previous version's, by a mixture sequential probability
  ratio test (mSPRT, Johari et al. 2017): checked as often as one likes, it raises a false alarm on a healthy model
  with probability at most LTR_GUARD_ALPHA over the version's whole life. Cases younger than
  LTR_GUARD_FEEDBACK_SECONDS are left out (their feedback may not have arrived).

When a check fails, the guard claims the version in the registry (`bad/<version>.json`, created atomically: of any
number of guards, in any number of service workers, exactly one wins), rolls `latest` back to the previous good
version (audited as automatic, with the reason and figures), and sends a notification. A version marked bad is never
checked again, never a rollback target, and the hourly run does not continue from it. With LTR_GUARD_ACTION=alert
the version is marked and notified, not rolled back.

All functions but `Guard.check` are pure; the figures go into a `GuardReport`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import polars as pl
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError
from ltr_pipeline.events.base import first_of_each
from ltr_pipeline.events.file import FileEventSource
from ltr_pipeline.events.frame import empty_frame, events_to_frame, feature_column
from ltr_pipeline.record import FeatureReference
from ltr_pipeline.registry import ModelRegistry, version_order

log = structlog.get_logger(__name__)

PSI_FLOOR = 1e-4  # a bin's share is at least this in the PSI (an empty bin would make it infinite)
MIXTURE_SD = 0.05  # mSPRT: the spread of engagement differences it is most sensitive to
LIVE_ACTIONS = ("publish", "rollback", "promote")  # audit actions that make a version live


class GuardCheck(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: float | None
    threshold: float
    verdict: str  # pass | fail | insufficient data
    detail: str = ""


class GuardReport(msgspec.Struct, kw_only=True):
    """One check of the live version: what it was compared with, the figures, and what the guard did."""

    at: str
    version: str | None
    previous: str | None = None
    live_since: str | None = None
    cases: int = 0
    checks: list[GuardCheck] = []
    action: str = "none"  # none | rolled_back | flagged | already handled | lost the claim | no model
    rolled_back_to: str | None = None

    @property
    def failed(self) -> list[GuardCheck]:
        return [c for c in self.checks if c.verdict == "fail"]


# --- pure measures -----------------------------------------------------------------------------------------------

def _bin_counts(edges: np.ndarray, present: np.ndarray) -> np.ndarray:
    """How many of the (finite) values fall in each bin the edges make (len(edges) + 1 bins)."""
    return np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)


def feature_reference(matrix: np.ndarray, names: Sequence[str], bins: int = 10) -> dict[str, FeatureReference]:
    """Each feature's training distribution in (up to) `bins` quantile bins, for the PSI."""
    out = {}
    for j, name in enumerate(names):
        column = matrix[:, j]
        present = column[np.isfinite(column)]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if present.size else np.empty(0)
        out[name] = FeatureReference(edges=edges.tolist(),
                                     shares=(_bin_counts(edges, present) / max(present.size, 1)).tolist(),
                                     missing=1 - present.size / max(column.size, 1))
    return out


def psi_of(observed: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares; an empty bin counts as
    PSI_FLOOR)."""
    o, e = np.maximum(observed, PSI_FLOOR), np.maximum(expected, PSI_FLOOR)
    return float(np.sum((o - e) * np.log(o / e)))


def psi(reference: FeatureReference, values: np.ndarray) -> float:
    """PSI of `values` against the reference bins (the missing share as one more bin)."""
    present = values[np.isfinite(values)]
    counts = _bin_counts(np.asarray(reference.edges), present)
    observed = np.append(counts, values.size - present.size) / max(values.size, 1)
    expected = np.append(np.asarray(reference.shares) * (1 - reference.missing), reference.missing)  # of all rows
    return psi_of(observed, expected)


def msprt(new_hits: int, new_cases: int, old_hits: int, old_cases: int, tau: float = MIXTURE_SD) -> float:
    """The mixture likelihood ratio of "the engagement rates differ" against "they are equal" (normal mixture over
    the difference, pooled variance under equality). Valid at any stopping time: P(ever >= 1/alpha | equal) <= alpha.
    """
    if min(new_cases, old_cases) == 0:
        return 0.0
    pooled = (new_hits + old_hits) / (new_cases + old_cases)
    v = pooled * (1 - pooled) * (1 / new_cases + 1 / old_cases)
    if v <= 0:
        return 0.0
    diff = new_hits / new_cases - old_hits / old_cases
    t2 = tau * tau
    return math.sqrt(v / (v + t2)) * math.exp(min(diff * diff * t2 / (2 * v * (v + t2)), 700.0))


def histogram_p95(bounds: Sequence[float], cumulative: Sequence[float]) -> float | None:
    """The 95th percentile of a Prometheus histogram (cumulative counts per upper bound; the last is +Inf) as the
    upper bound of its bucket, in the bounds' unit; None without observations."""
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= 0.95 * total:
            return float(bound)
    return math.inf


# --- what production left ------------------------------------------------------------------------------------

def read_events(settings: Settings, start: datetime, end: datetime) -> pl.DataFrame:
    """The events with `ts` in [start, end), from where the service sends them: the Kafka topic (read without
    committing anything) when its sink is Kafka, else the event files' day folders (`<events>/<YYYY-MM-DD>/`, where
    the file sink and the simulator write), one folder per day of the window."""
    names, actions = settings.feature_names, settings.label_grades.keys()
    if settings.sink == "kafka":
        from ltr_pipeline.events.kafka import read_recent

        return first_of_each([events_to_frame(read_recent(settings, start, end), names)])[0]
    frames = [empty_frame(names)]
    day = start.date()
    while day <= end.date():
        folder = settings.events_path / day.isoformat()
        if folder.is_dir():
            frames.append(FileEventSource(folder, settings.max_event_file_bytes).read(start, end, actions, names).frame)
        day += timedelta(days=1)
    return first_of_each(frames)[0]


def version_cases(events: pl.DataFrame, version: str, start: datetime, end: datetime) -> pl.DataFrame:
    """One row per case the version ranked in [start, end): its time and whether the legacy sum answered."""
    return (events.filter((pl.col("event_type") == "recommendation") & (pl.col("model_version") == version)
                          & pl.col("ts").is_between(start, end, closed="left"))
            .group_by("case_id").agg(pl.col("ts").min(), (pl.col("algorithm") == "legacy").any().alias("fallback")))


def engaged_cases(events: pl.DataFrame, grades: Mapping[str, int]) -> pl.Series:
    """Case ids with a positive action (a feedback graded above 0)."""
    positive = [a for a, g in grades.items() if g > 0]
    return events.filter((pl.col("event_type") == "feedback") & pl.col("action").is_in(positive))\
        .get_column("case_id").unique()


# --- the guard -------------------------------------------------------------------------------------------------

class Guard:
    """Checks the registry's live version; `latency` gives the p95 (ms) of the service's ranking requests since a
    moment, when the guard runs inside the service."""

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None,
                 latency: Callable[[str], float | None] | None = None,
                 notify: Callable[[GuardReport], None] | None = None) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry.from_settings(settings)
        self.latency = latency
        self.notify = notify or self._notify

    def check(self, now: datetime | None = None) -> GuardReport:
        """One check of the live version at `now` (default: the clock); rolls back when a check fails."""
        now = now or datetime.now(UTC)
        s, registry = self.settings, self.registry
        version = registry.live_version()
        report = GuardReport(at=now.isoformat(), version=version)
        if version is None:
            report.action = "no model"
            return report
        bad = registry.bad_versions()
        if version in bad:
            report.action = "already handled"
            return report
        since, previous = self._went_live(version, now)
        previous = None if previous in bad else previous  # a bad version is no baseline
        report.live_since, report.previous = since.isoformat(), previous
        baseline_start = since - timedelta(days=s.guard_baseline_days)
        events = read_events(s, baseline_start, now)
        cases = version_cases(events, version, since, now)
        report.cases = cases.height
        report.checks = [self._fallbacks(cases), self._latency(version), *self._drift(events, version, since, now),
                         self._engagement(events, cases, previous, baseline_start, since, now)]
        if report.failed:
            self._act(report, now, bad)
        return report

    def _went_live(self, version: str, now: datetime) -> tuple[datetime, str | None]:
        """When `version` last became live and the version live before it (from the audit log)."""
        entries = [a for a in self.registry.audit_log(version) if a.get("version") == version and a.get("action") in
                   LIVE_ACTIONS]
        if not entries:
            return now, None
        last = max(entries, key=lambda a: a["at"])
        return datetime.fromisoformat(last["at"]), last.get("previous")

    def _fallbacks(self, cases: pl.DataFrame) -> GuardCheck:
        s = self.settings
        fallbacks = int(cases.get_column("fallback").sum()) if cases.height else 0
        rate = fallbacks / cases.height if cases.height else None
        enough = cases.height >= s.guard_min_cases
        return GuardCheck(name="fallback rate", value=rate, threshold=s.guard_max_fallback_rate,
                          verdict=_verdict(enough and rate is not None, (rate or 0) <= s.guard_max_fallback_rate),
                          detail=f"{fallbacks} of {cases.height} cases answered by the legacy sum")

    def _latency(self, version: str) -> GuardCheck:
        p95 = self.latency(version) if self.latency else None
        limit = self.settings.latency_p95_max_ms
        return GuardCheck(name="latency p95 (ms)", value=p95, threshold=limit,
                          verdict=_verdict(p95 is not None, (p95 or 0) < limit),
                          detail="service requests since the version went live" if self.latency else
                          "measured inside the service only")

    def _drift(self, events: pl.DataFrame, version: str, since: datetime, now: datetime) -> list[GuardCheck]:
        """The feature with the largest PSI against the version's training rows."""
        s = self.settings
        try:
            reference = msgspec.convert(self.registry.show(version).get("reference", {}),
                                        dict[str, FeatureReference])
        except (LtrError, msgspec.ValidationError):
            reference = {}
        rows = events.filter((pl.col("event_type") == "recommendation") & (pl.col("model_version") == version)
                             & pl.col("ts").is_between(since, now, closed="left"))
        if not reference:
            return [GuardCheck(name="feature drift (PSI)", value=None, threshold=s.guard_max_psi,
                               verdict="insufficient data", detail="the version records no training distribution")]
        scores = {name: psi(ref, rows.get_column(feature_column(name)).to_numpy().astype(np.float64))
                  for name, ref in reference.items() if feature_column(name) in rows.columns} if rows.height else {}
        worst = max(scores, key=scores.__getitem__) if scores else None
        value = scores[worst] if worst else None
        return [GuardCheck(name="feature drift (PSI)", value=value, threshold=s.guard_max_psi,
                           verdict=_verdict(rows.height >= s.guard_min_rows and value is not None,
                                            (value or 0) <= s.guard_max_psi),
                           detail=f"largest: {worst} over {rows.height} shown candidates" if worst else "no rows")]

    def _engagement(self, events: pl.DataFrame, cases: pl.DataFrame, previous: str | None,
                    baseline_start: datetime, since: datetime, now: datetime) -> GuardCheck:
        s = self.settings
        threshold = 1 / s.guard_alpha
        if previous is None:
            return GuardCheck(name="engagement (mSPRT)", value=None, threshold=threshold,
                              verdict="insufficient data", detail="no previous version to compare with")
        mature = now - timedelta(seconds=s.guard_feedback_seconds)
        engaged = engaged_cases(events, s.label_grades).to_list()
        new = cases.filter(pl.col("ts") < mature)
        old = version_cases(events, previous, baseline_start, since).filter(pl.col("ts") < mature)
        new_hits = int(new.get_column("case_id").is_in(engaged).sum()) if new.height else 0
        old_hits = int(old.get_column("case_id").is_in(engaged).sum()) if old.height else 0
        ratio = msprt(new_hits, new.height, old_hits, old.height)
        worse = new.height > 0 and old.height > 0 and new_hits / new.height < old_hits / old.height
        enough = min(new.height, old.height) >= s.guard_min_cases
        detail = (f"{new_hits}/{new.height} cases engaged against {old_hits}/{old.height} with {previous}"
                  if new.height and old.height else f"{new.height} cases of this version, {old.height} of {previous}")
        return GuardCheck(name="engagement (mSPRT)", value=ratio, threshold=threshold,
                          verdict=_verdict(enough, not (worse and ratio >= threshold)), detail=detail)

    def _act(self, report: GuardReport, now: datetime, bad: Mapping[str, Any]) -> None:
        """Claim the version as bad (one guard wins), then roll back or flag it, and tell people. `bad`: the versions
        already marked bad."""
        s, registry, version = self.settings, self.registry, report.version
        assert version is not None
        target = self._rollback_target(version, report.previous, bad)
        reason = "; ".join(map(_describe, report.failed))
        rolling = s.guard_action == "rollback" and target is not None
        record = {"at": now.isoformat(), "reason": reason, "action": "rolled_back" if rolling else "flagged",
                  "rolled_back_to": target if rolling else None, "cases": report.cases,
                  "checks": msgspec.to_builtins(report.checks)}
        if not registry.mark_bad(version, record):
            report.action = "lost the claim"  # another guard (another worker) took it
            return
        if rolling:
            assert target is not None
            registry.rollback(target, reason=f"guard: {reason}", automatic=True, when=now, bad_version=version,
                              cases=report.cases)
            report.action, report.rolled_back_to = "rolled_back", target
        else:
            report.action = "flagged"
        log.error("guard.failed", version=version, action=report.action, rolled_back_to=report.rolled_back_to,
                  reason=reason)
        self.notify(report)

    def _rollback_target(self, version: str, previous: str | None, bad: Mapping[str, Any]) -> str | None:
        """The previous live version if it is good, else the newest good version older than `version`."""
        if previous is not None and previous not in bad and previous != version:
            return previous
        older = [v for v in self.registry.versions() if version_order(v) < version_order(version) and v not in bad]
        return older[-1] if older else None

    def _notify(self, report: GuardReport) -> None:
        from ltr_pipeline.notify import Notice, notify

        what = f"rolled back to {report.rolled_back_to}" if report.rolled_back_to else "flagged (not rolled back)"
        notify(self.settings, Notice(
            level="failure", title=f"LTR guard: version {report.version} {what}",
            text="\n".join(map(_describe, report.failed)),
            details=msgspec.to_builtins(report)))


def _verdict(enough: bool, ok: bool) -> str:
    return "insufficient data" if not enough else "pass" if ok else "fail"


def _describe(check: GuardCheck) -> str:
    """A failed check in one line: its figure, its limit and what it was measured on."""
    return f"{check.name} {_num(check.value)} (limit {_num(check.threshold)}): {check.detail}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def bad_days(records: Mapping[str, Mapping[str, Any]]) -> dict[date, int]:
    """Versions the guard marked bad (rolled back or flagged), per day of its verdict."""
    per_day: dict[date, int] = {}
    for record in records.values():
        day = datetime.fromisoformat(str(record["at"])).date()
        per_day[day] = per_day.get(day, 0) + 1
    return per_day
