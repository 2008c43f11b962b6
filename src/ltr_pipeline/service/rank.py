"""`POST /ltr/rank`: the hot path, answered by a pure ASGI middleware in front of FastAPI.

FastAPI's routing, dependency solving and exception middleware cost about 50 us per request here, a fifth of a
whole ranking's server time at 50 candidates; the ranking endpoint needs none of them, so `RankEndpoint` reads the
body, calls `Ranker.rank` and writes the answer itself, and passes every other request on to FastAPI.
The request is decoded and type-checked in one pass by msgspec, features become one numpy array, and the answer is
encoded by msgspec from structs (BENCHMARKS.md has the figures).

Request:  {"case_id"?: str, "candidates": [{"lawyer_id": str, "features": {name: number|null}, "group"?: str}]}
Answer:   {"case_id", "model_version", "algorithm": "ltr"|"legacy", "variant": "live"|"challenger"|"interleaved",
           "fallback_reason", "explored", "order_probability", "ranking": [{"lawyer_id", "score", "rank"}]}
A share LTR_EXPLORE_FRACTION of rankings is shown with one adjacent pair swapped (counterfactual/explore.py):
`explored` says so, and `order_probability` is the probability this order had of being shown. With a challenger and
LTR_INTERLEAVE_FRACTION, that share of rankings is a team-draft interleaving of the live model and the challenger
(`variant` "interleaved"; each event records the team of its place).
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.counterfactual.explore import explore
from ltr_pipeline.events.schema import MAX_TEXT_CHARS, Event
from ltr_pipeline.events.sink import EventSink
from ltr_pipeline.fairness import ExposureBalancer
from ltr_pipeline.interleaving import team_draft
from ltr_pipeline.service.interleave import Pending, RivalScorer, TeamMemory
from ltr_pipeline.service.limits import limited_body
from ltr_pipeline.service.metrics import FALLBACK_REASONS, ServiceMetrics
from ltr_pipeline.service.reloader import LiveModel, Reloader
from ltr_pipeline.service.shadow import ShadowScorer, ab_variant

log = structlog.get_logger("ltr_pipeline.service")
MAX_CANDIDATES = 1000
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]  # the event contract's strings
Group = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]  # "" reads as no group, as null does
PATH = "/ltr/rank"
NO_MODEL, SCORING_ERROR, NON_FINITE = FALLBACK_REASONS


class BadRequest(ValueError):
    pass


class Reply(NamedTuple):
    status: int
    body: bytes
    answered: Any = None  # the ltr_predictions counter to count this answer in (None: not a ranking)
    seconds: float = 0.0  # time taken to rank, for ltr_prediction_duration_seconds


@functools.cache
def _decoder(feature_names: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    """A decoder for requests over these features: `features` decodes straight into a struct of them (missing:
    NaN; null: None; ints read as floats; booleans and strings refused, naming the field; other keys ignored). The
    structs are plain data, never in a reference cycle: kept out of the garbage collector (gc=False), 12% quicker to
    decode."""
    fields = [(f"f{i}", float | None, math.nan) for i in range(len(feature_names))]
    rename = {field[0]: name for field, name in zip(fields, feature_names, strict=True)}
    features = msgspec.defstruct("Features", fields, rename=rename, gc=False)
    candidate = msgspec.defstruct("Candidate", [("lawyer_id", Text), ("features", features),
                                                ("group", Group | None, None)], gc=False)
    request = msgspec.defstruct("RankRequest", [("candidates", list[candidate]),  # type: ignore[valid-type]
                                                ("case_id", Text | None, None)], gc=False)
    return msgspec.json.Decoder(request)


class Ranked(msgspec.Struct, gc=False):
    lawyer_id: str
    score: float
    rank: int


class Answer(msgspec.Struct, gc=False):
    case_id: str
    model_version: str | None
    algorithm: str
    variant: str
    fallback_reason: str | None
    explored: bool
    order_probability: float
    ranking: list[Ranked]


_encode = msgspec.json.Encoder().encode  # a quarter quicker than dicts through orjson here, the same bytes
_RANKS = range(1, MAX_CANDIDATES + 1)


_features, _ids, _groups = (operator.attrgetter(name) for name in ("features", "lawyer_id", "group"))


def parse_rank_request(
    raw: bytes, feature_names: Sequence[str]
) -> tuple[str | None, list[str], list[str | None], np.ndarray]:
    """(case_id, lawyer_ids, groups, features matrix in `feature_names` order); missing features are NaN."""
    try:
        body = _decoder(tuple(feature_names)).decode(raw)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's depth guard, even inside a key the request ignores
        raise BadRequest("body is nested too deeply") from None
    candidates = body.candidates
    if not 0 < len(candidates) <= MAX_CANDIDATES:
        raise BadRequest(f"'candidates' must hold 1 to {MAX_CANDIDATES} items")
    values = itertools.chain.from_iterable(map(msgspec.structs.astuple, map(_features, candidates)))
    try:  # straight from the floats into the array: a quarter quicker than through a list of tuples
        matrix = np.fromiter(values, np.float64, len(candidates) * len(feature_names))
    except TypeError:  # an explicit null somewhere: np.array reads None as NaN
        matrix = np.array(list(map(msgspec.structs.astuple, map(_features, candidates))), dtype=np.float64)
    matrix = matrix.reshape(len(candidates), len(feature_names))
    return body.case_id, list(map(_ids, candidates)), [g or None for g in map(_groups, candidates)], matrix


def _model_scores(model: LiveModel, matrix: np.ndarray) -> tuple[np.ndarray, list[float], str | None]:
    """The model's scores, and None; or why they cannot be used (no model, an error, a non-finite score)."""
    if model.scorer is None:
        return np.empty(0), [], NO_MODEL
    try:
        scores = model.scorer.score(matrix)
    except Exception as exc:
        log.error("rank.scoring_failed", error=str(exc), version=model.version)
        return np.empty(0), [], SCORING_ERROR
    values = scores.tolist()
    return scores, values, None if all(map(math.isfinite, values)) else NON_FINITE


class Shown(NamedTuple):
    """The order a client sees, whether exploration swapped a pair in it and that order's probability, and for an
    interleaved ranking the team ("live", "challenger" or "shared") of each place."""

    order: list[int]
    explored: bool
    probability: float
    teams: list[str] | None = None


def recommendation_events(
    case_id: str, ids: list[str], groups: list[str | None], matrix: np.ndarray, feature_names: Sequence[str],
    version: str | None, algorithm: str, ts: datetime, shown: Shown, challenger_version: str | None = None,
) -> list[Event]:
    """One recommendation event per candidate, in the order shown, as the pipeline reads them back."""
    events = []
    for position, i in enumerate(shown.order, start=1):
        row = matrix[i].tolist()
        events.append(Event(
            f"r-{uuid.uuid4().hex}", "recommendation", ts, case_id, ids[i], position=position,
            features=dict(zip(feature_names, row, strict=True)), group=groups[i], model_version=version,
            algorithm=algorithm, explored=shown.explored, order_probability=shown.probability,
            team=shown.teams[position - 1] if shown.teams else None, challenger_version=challenger_version,
        ))
    return events


class Ranker:
    def __init__(self, settings: Settings, reloader: Reloader, metrics: ServiceMetrics, sink: EventSink,
                 shadow: ShadowScorer, rival: RivalScorer) -> None:
        self.settings, self.reloader, self.metrics, self.sink, self.shadow = settings, reloader, metrics, sink, shadow
        self.rival = rival
        self.names = settings.feature_names
        self.balancer = ExposureBalancer(settings.fair_rerank_strength, decay=0.999)
        self.fair = settings.fair_rerank_strength > 0  # else the model's order, as it is
        self._answered = functools.cache(metrics.predictions.labels)  # the label lookup, once per label pair
        self.explore_fraction = settings.explore_fraction
        self.interleave_fraction = settings.interleave_fraction
        self.teams = TeamMemory()
        self._rng = random.Random()

    def rank(self, raw: bytes, shadow_requested: bool = False) -> Reply:
        """The answer to one ranking request; `record` counts it once sent."""
        started = time.perf_counter()
        metrics, settings = self.metrics, self.settings
        try:
            case_id, ids, groups, matrix = parse_rank_request(raw, self.names)
        except BadRequest as exc:
            metrics.bad_requests.inc()
            log.warning("request.refused", path=PATH, reason=str(exc)[:200])
            return Reply(422, _encode({"detail": str(exc)}))
        case_id = case_id or f"c-{uuid.uuid4().hex}"
        live, challenger = self.reloader.live, self.reloader.challenger  # one read each: whole models
        model, variant, pending = live, "live", None
        if challenger is not None and ab_variant(case_id, settings.ab_fraction) == "challenger":
            model, variant = challenger, "challenger"
        elif challenger is not None and challenger.scorer is not None and \
                self._rng.random() < self.interleave_fraction:  # scored beside the live model: service/interleave.py
            pending = challenger, self.rival.submit(challenger.scorer, matrix)
        scores, values, reason = self._score(model, matrix)
        if reason is None and challenger is not None and variant == "live" and (
            shadow_requested or random.random() < settings.shadow_fraction
        ):
            self.shadow.submit(case_id, challenger, live.version, matrix, scores)
        algorithm = "legacy" if reason else "ltr"
        order = self._order(scores, values, groups, reason)
        shown = None
        if pending is not None and reason is None:
            shown = self._interleave(*pending, order)
        if shown is None or shown.teams is None:
            shown = Shown(*explore(order, self.explore_fraction, self._rng))
        else:
            variant = "interleaved"
            self.teams.remember(case_id, [ids[i] for i in shown.order], shown.teams)
            metrics.interleaved.inc()
        order = shown.order
        ranking = list(map(Ranked, map(ids.__getitem__, order), map(values.__getitem__, order), _RANKS))
        if self.sink.name != "none":
            now, version, names = datetime.now(UTC), model.version, self.names
            rival = challenger.version if shown.teams is not None and challenger is not None else None
            self.sink.submit(lambda: recommendation_events(case_id, ids, groups, matrix, names, version, algorithm,
                                                           now, shown, rival))
        body = _encode(Answer(case_id, model.version, algorithm, variant, reason, shown.explored, shown.probability,
                              ranking))
        return Reply(200, body, self._answered(algorithm, variant), time.perf_counter() - started)

    def _score(self, model: LiveModel, matrix: np.ndarray) -> tuple[np.ndarray, list[float], str | None]:
        """(scores, the same as a list, why the legacy sum scored instead of the model: None when it did not)."""
        scores, values, reason = _model_scores(model, matrix)
        if reason is None:
            return scores, values, None
        scores = model.legacy.score(matrix)
        self.metrics.fallbacks.labels(reason=reason).inc()
        return scores, scores.tolist(), reason

    def _order(self, scores: np.ndarray, values: list[float], groups: list[str | None], reason: str | None
               ) -> list[int]:
        if reason or self.fair:  # the balancer's order (`rank_order` when off): it also sorts NaN last
            return list(self.balancer.order(scores, groups).tolist())
        # Finite scores, best first, ties in request order, as `rank_order`. Python's sort, not numpy's: right after
        # the trees have run, numpy's ufunc machinery is out of the CPU caches (14 us more here).
        return sorted(range(len(values)), key=values.__getitem__, reverse=True)

    def _interleave(self, challenger: LiveModel, pending: Pending, order: list[int]) -> Shown | None:
        """The team-draft of the live order and the challenger's; None (the live order) if the challenger failed."""
        scores = pending.result()
        if isinstance(scores, Exception):
            log.error("rank.challenger_scoring_failed", error=str(scores), version=challenger.version)
            return None
        if not np.isfinite(scores).all():
            return None
        rival = (-scores).argsort(kind="stable").tolist()  # the challenger's own order, ties in request order
        shown, teams = team_draft(order, rival, self._rng)
        return Shown(shown, False, 1.0, teams)

    def record(self, reply: Reply) -> None:
        """Count an answered request, once its answer is on its way: bookkeeping off the response's path."""
        if reply.answered is not None:
            reply.answered.inc()
            self.metrics.prediction_duration.observe(reply.seconds)


JSON_HEADERS = [(b"content-type", b"application/json")]


class RankEndpoint:
    """Pure ASGI middleware: answers `POST /ltr/rank` with `ranker`, hands everything else to `app`."""

    def __init__(self, app: Any, ranker: Ranker) -> None:
        self.app, self.ranker = app, ranker

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = await limited_body(scope, receive, send, self.ranker.settings.max_body_bytes,
                                 self.ranker.metrics.bad_requests.inc)
        if raw is None:  # refused, or the client left
            return
        shadow = any(k == b"x-shadow-ltr" and v == b"1" for k, v in scope["headers"])
        reply = self.ranker.rank(raw, shadow)
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(reply.body)).encode())]})
        await send({"type": "http.response.body", "body": reply.body})
        # Runs before this worker takes its next request (one event loop), after the client has its answer.
        self.ranker.record(reply)
