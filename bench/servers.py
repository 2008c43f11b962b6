"""The baselines `bench.service_latency` runs beside the service, each as its own uvicorn process.

    noop:  an ASGI app that answers every request with `{}` and does nothing else (the HTTP floor)
    plain: FastAPI with a pydantic request model, `Booster.predict` and FastAPI's default JSON response: how a
           ranking endpoint is usually first written (model file from $BENCH_MODEL, features from $BENCH_FEATURES)
"""

from __future__ import annotations

import os
from typing import Any

import lightgbm as lgb
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


async def noop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body, as any endpoint must
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class Candidate(BaseModel):
    lawyer_id: str
    features: dict[str, float]


class RankRequest(BaseModel):
    case_id: str | None = None
    candidates: list[Candidate]


def plain() -> FastAPI:
    booster = lgb.Booster(model_file=os.environ["BENCH_MODEL"])
    names = os.environ["BENCH_FEATURES"].split(",")
    app = FastAPI()

    @app.post("/ltr/rank")
    async def rank(request: RankRequest) -> dict[str, Any]:
        matrix = np.array([[c.features.get(n, np.nan) for n in names] for c in request.candidates])
        scores = booster.predict(matrix, num_threads=1)
        order = np.argsort(-np.asarray(scores), kind="stable")
        return {"case_id": request.case_id, "ranking": [
            {"lawyer_id": request.candidates[i].lawyer_id, "score": float(scores[i]), "rank": r}
            for r, i in enumerate(order.tolist(), start=1)
        ]}

    return app
