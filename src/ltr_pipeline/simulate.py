"""A synthetic legal marketplace that produces the same events the live platform does.

Lawyers carry their own traits (T success rate, Q qualification, R review score, C soft skills, an area of practice,
a location, free capacity, an optional self-declared group). Each case has an area, a location and an urgency; its
candidates get pair features (A area match, S case similarity, G proximity, U urgency/capacity fit). A hidden true
relevance, non-linear in the features, decides what clients do; the candidates are shown in the order of the model
live that day (the legacy weighted sum when there is none), and clients examine lower positions less often
(position bias). Optionally clients are biased against one group: their reviews (R) and their acceptance are
lowered, which the fairness gate should catch.

Every day draws from its own seeded generator, so a day's events depend only on the seed, the day and the live
model: simulating day by day or many days at once gives the same events.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ltr_pipeline.counterfactual.explore import explore
from ltr_pipeline.events.schema import Event
from ltr_pipeline.scoring import LEGACY_WEIGHTS, Scorer

SIM_FEATURES = tuple(LEGACY_WEIGHTS)  # the seed's features: what the simulated platform shows
GROUPS = ("F", "M")
N_AREAS = 6


@dataclass(frozen=True)
class SimConfig:
    seed: int = 42
    lawyers: int = 400
    cases_per_day: int = 300
    candidates: int = 10
    bias_group: str = "F"
    bias: float = 0.0  # 0 = no bias; 0.5 = the group's reviews and acceptance halved
    click_model: ClickModel = field(default_factory=lambda: PositionBased())
    explore_fraction: float = 0.0  # rankings shown with the service's exploration (counterfactual/explore.py)


@dataclass(frozen=True)
class Marketplace:
    ids: list[str]
    area: npt.NDArray[np.int64]
    xy: npt.NDArray[np.float64]
    traits: dict[str, npt.NDArray[np.float64]]  # T, Q, R, C, capacity
    group: list[str | None]


def make_marketplace(config: SimConfig) -> Marketplace:
    rng = np.random.default_rng([config.seed, 0])
    n = config.lawyers
    group: list[str | None] = [
        None if u < 0.1 else GROUPS[int(u * 1000) % len(GROUPS)] for u in rng.random(n)
    ]
    traits = {name: rng.beta(2.0, 2.0, n) for name in ("T", "Q", "R", "C")}
    traits["capacity"] = rng.random(n)
    if config.bias > 0:
        biased = np.array([g == config.bias_group for g in group])
        traits["R"] = np.where(biased, traits["R"] * (1 - config.bias), traits["R"])
    return Marketplace(
        ids=[f"l-{i:04d}" for i in range(n)],
        area=rng.integers(0, N_AREAS, n),
        xy=rng.random((n, 2)),
        traits=traits,
        group=group,
    )


def true_relevance(f: dict[str, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """The hidden utility of a candidate for a case: interactions and thresholds a weighted sum cannot express."""
    return (
        2.2 * f["A"] * f["S"]
        + 1.6 * f["T"] * f["Q"]
        + 1.0 / (1.0 + np.exp(-(f["G"] - 0.7) * 12.0))
        + 0.8 * f["R"] ** 2
        - 1.8 * (f["U"] < 0.25)
        + 0.3 * f["C"]
    )


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def click_probability(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """P(click | examined) of a candidate of utility `u`."""
    return _sigmoid(2.5 * (u - 2.6))


def true_relevance_grade(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The graded relevance the truth measures rank by: the grade g whose nDCG gain 2^g - 1 is the candidate's
    expected gain once examined, E[2^label - 1 | examined], with the default grades (clicked 1, accepted 2,
    contracted 3, each action needing the one before). That expectation is what a ranker's logged DCG estimates,
    so truth and the pipeline's own measures judge the same thing."""
    accept, contract = _sigmoid(3.0 * (u - 3.2)), _sigmoid(3.0 * (u - 3.8))
    gain = click_probability(u) * (1.0 + accept * (2.0 + 4.0 * contract))  # gains 1, 3, 7 for grades 1, 2, 3
    return np.log2(1.0 + gain)


@dataclass(frozen=True)
class Actions:
    """What a client did with one ranked list, position by position (index 0 = top)."""

    examined: npt.NDArray[np.bool_]
    clicked: npt.NDArray[np.bool_]
    accepted: npt.NDArray[np.bool_]
    contracted: npt.NDArray[np.bool_]
    declined: npt.NDArray[np.bool_]

    def action(self, pos: int) -> str | None:
        """The highest action at index `pos`, or None when the client did nothing there."""
        return ("contracted" if self.contracted[pos] else "accepted" if self.accepted[pos]
                else "clicked" if self.clicked[pos] else "declined" if self.declined[pos] else None)


class ClickModel(ABC):
    """How clients act on a ranked list: which positions they examine, and what they do with what they examine."""

    name: str

    @abstractmethod
    def act(self, rng: np.random.Generator, u: npt.NDArray[np.float64],
            penalty: npt.NDArray[np.float64] | float) -> Actions:
        """`u`: true utilities in the order shown; `penalty` scales acceptance (the biased clients' factor)."""

    @staticmethod
    def _follow_up(rng: np.random.Generator, u: npt.NDArray[np.float64], examined: npt.NDArray[np.bool_],
                   clicked: npt.NDArray[np.bool_], penalty: npt.NDArray[np.float64] | float) -> Actions:
        k = len(u)
        accepted = clicked & (rng.random(k) < _sigmoid(3.0 * (u - 3.2)) * penalty)
        contracted = accepted & (rng.random(k) < _sigmoid(3.0 * (u - 3.8)))
        declined = examined & ~clicked & (rng.random(k) < 0.3)
        return Actions(examined, clicked, accepted, contracted, declined)


@dataclass(frozen=True)
class PositionBased(ClickModel):
    """Position p is examined with probability 1 / p^eta, whatever else is shown (the position-based model).
    `false_clicks` > 0 adds trust bias: an examined candidate is also clicked, whatever its utility, with
    probability false_clicks / p^eta (clients trust what is ranked high)."""

    eta: float = 0.5
    false_clicks: float = 0.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"pbm(eta={self.eta:g})" if not self.false_clicks else \
            f"trust(eta={self.eta:g},false={self.false_clicks:g})"

    def examination(self, k: int) -> npt.NDArray[np.float64]:
        return np.asarray(1.0 / np.arange(1, k + 1) ** self.eta, dtype=np.float64)

    def act(self, rng: np.random.Generator, u: npt.NDArray[np.float64],
            penalty: npt.NDArray[np.float64] | float) -> Actions:
        k = len(u)
        curve = self.examination(k)
        examined = rng.random(k) < curve
        p_click = click_probability(u)
        if self.false_clicks:
            p_click = p_click + (1.0 - p_click) * self.false_clicks * curve
        clicked = examined & (rng.random(k) < p_click)
        return self._follow_up(rng, u, examined, clicked, penalty)


@dataclass(frozen=True)
class Cascade(ClickModel):
    """Clients read from the top, one candidate after another (the dependent click model): after a click they
    stop with probability `stop_after_click`, after a candidate they skip with probability 1 - `patience`."""

    patience: float = 0.9
    stop_after_click: float = 0.5
    name: str = "cascade"

    def act(self, rng: np.random.Generator, u: npt.NDArray[np.float64],
            penalty: npt.NDArray[np.float64] | float) -> Actions:
        k = len(u)
        click_draw, go_on = rng.random(k), rng.random(k)
        p_click = click_probability(u)
        examined, clicked = np.zeros(k, dtype=bool), np.zeros(k, dtype=bool)
        for pos in range(k):
            examined[pos] = True
            clicked[pos] = click_draw[pos] < p_click[pos]
            if go_on[pos] >= (1.0 - self.stop_after_click if clicked[pos] else self.patience):
                break
        return self._follow_up(rng, u, examined, clicked, penalty)


CLICK_MODELS: dict[str, ClickModel] = {
    "pbm": PositionBased(),
    "cascade": Cascade(),
    "trust": PositionBased(false_clicks=0.1),
}


def _draw_case(market: Marketplace, rng: np.random.Generator, k: int
               ) -> tuple[npt.NDArray[np.int64], dict[str, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """A new case: its candidates (indices into the market), their features, and their true utilities."""
    case_area = int(rng.integers(0, N_AREAS))
    case_xy = rng.random(2)
    urgency = float(rng.random())
    # Most candidates come from the case's area, the rest from anywhere (as the platform's pre-filter does).
    in_area = np.flatnonzero(market.area == case_area)
    n_area = min(len(in_area), round(k * 0.6))
    chosen = rng.choice(in_area, n_area, replace=False)
    others = np.setdiff1d(np.arange(len(market.ids)), chosen)
    chosen = np.concatenate([chosen, rng.choice(others, k - n_area, replace=False)])
    related = (market.area[chosen] - case_area) % N_AREAS == 1
    feats = {
        "A": np.where(market.area[chosen] == case_area, 1.0, np.where(related, 0.5, 0.0)),
        "G": np.clip(1.0 - np.linalg.norm(market.xy[chosen] - case_xy, axis=1), 0.0, 1.0),
        "U": np.clip(1.0 - np.abs(market.traits["capacity"][chosen] - urgency) * 1.5, 0.0, 1.0),
        **{t: market.traits[t][chosen] for t in ("T", "Q", "R", "C")},
    }
    feats["S"] = np.clip(rng.beta(2, 3, k) + 0.35 * feats["A"], 0.0, 1.0)
    return chosen, feats, true_relevance(feats) + rng.normal(0.0, 0.6, k)


def simulate_day(
    market: Marketplace, day: date, config: SimConfig, scorer: Scorer, model_version: str | None,
    feature_names: tuple[str, ...] = SIM_FEATURES, truth: list[dict[str, object]] | None = None,
    after_case: Callable[[int, list[Event]], None] | None = None,
) -> list[Event]:
    """One day of cases, in time order: recommendations in the live model's order, then the clients' feedback. With
    `truth`, each shown candidate's true utility, graded relevance and whether it was examined are appended to it
    (what the pipeline never sees). `after_case(i, events so far)` is called after each case (e.g. to watch the
    day as it goes)."""
    rng = np.random.default_rng([config.seed, day.toordinal()])
    k = config.candidates
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    biased = np.array([g == config.bias_group for g in market.group]) if config.bias > 0 else None
    events: list[Event] = []
    for case in range(config.cases_per_day):
        case_id = f"c-{day:%Y%m%d}-{case:05d}"
        chosen, feats, utility = _draw_case(market, rng, k)
        matrix = np.column_stack([feats[name] for name in feature_names])
        order = np.argsort(-scorer.score(matrix), kind="stable")
        explored, probability = getattr(scorer, "last_exploration", None) or (None, None)  # a service explored
        served_by = getattr(scorer, "version", model_version)  # a service says which version ranked each case
        if config.explore_fraction > 0:  # as the service would show it (drawn only then: same events otherwise)
            shown, explored, probability = explore(order.tolist(), config.explore_fraction,
                                                   random.Random(int(rng.integers(2**62))))
            order = np.asarray(shown)
        # The cases arrive through 22 hours in order (one uniform draw each, as ever, so the stream is unchanged).
        ts = day_start + timedelta(seconds=(case + float(rng.uniform(0, 1))) * 22 * 3600 / config.cases_per_day)
        for pos, idx in enumerate(order, start=1):
            lawyer = int(chosen[idx])
            events.append(Event(
                f"r-{case_id}-{pos:02d}", "recommendation", ts, case_id, market.ids[lawyer],
                position=pos,
                features={name: round(float(matrix[idx, j]), 4) for j, name in enumerate(feature_names)},
                group=market.group[lawyer], model_version=served_by, algorithm=scorer.algorithm,
                explored=explored, order_probability=probability,
            ))
        u = utility[order]
        penalty = 1.0 - config.bias * biased[chosen[order]] if biased is not None else 1.0
        acts = config.click_model.act(rng, u, penalty)
        for pos in range(k):
            action = acts.action(pos)
            if action is None:
                continue
            fts = ts + timedelta(seconds=float(rng.uniform(60, 5400)))
            events.append(Event(f"f-{case_id}-{pos + 1:02d}", "feedback", fts, case_id,
                                market.ids[int(chosen[order[pos]])], action=action))
        if truth is not None:
            relevance = true_relevance_grade(u)
            truth.extend({"case_id": case_id, "lawyer_id": market.ids[int(chosen[order[pos]])], "position": pos + 1,
                          "utility": float(u[pos]), "relevance": float(relevance[pos]),
                          "examined": bool(acts.examined[pos])} for pos in range(k))
        if after_case is not None:
            after_case(case, events)
    return events


def write_day(events: list[Event], events_dir: Path, day: date) -> Path:
    """Write a day's events to events_dir/YYYY-MM-DD/events.jsonl, replacing a previous simulation of it."""
    folder = Path(events_dir) / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("wb") as fh:
        for event in sorted(events, key=lambda e: e.ts):
            fh.write(event.to_json() + b"\n")
    tmp.replace(path)
    return path


def simulate_days(
    config: SimConfig, start: date, days: int, events_dir: Path,
    live_model: Callable[[date], tuple[Scorer, str | None]],
    on_day: Callable[[date, int], None] | None = None,
    write: Callable[[list[Event], Path, date], object] = write_day,
) -> int:
    """Simulate consecutive days, asking `live_model(day)` for the scorer live that day. Returns events written.

    `write` stores a day's events: files under `events_dir` by default, or e.g. a Kafka topic.
    """
    market = make_marketplace(config)
    total = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        scorer, version = live_model(day)
        events = simulate_day(market, day, config, scorer, version)
        write(events, events_dir, day)
        total += len(events)
        if on_day:
            on_day(day, len(events))
    return total
