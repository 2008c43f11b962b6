"""Import of standard learning-to-rank files (svmlight / LETOR) as events, so any public LTR benchmark goes through
the same pipeline: import -> dataset -> train -> evaluate.

A line is `label [qid:N] index:value ... [# comment]`. Queries are runs of lines with the same `qid`, or, without
`qid`, the group sizes of a `.query` file (one per line, as in LightGBM's examples). An absent index is 0, as
svmlight means it. Each query becomes a case; each line a `recommendation` at its position in the file, with features
`f1..fN`; a label > 0 becomes a `feedback` event with the action `label_<label>`, graded `<label>`. Training queries
are stamped on one day, test queries on the next, so the pipeline's time split holds the test file out exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from ltr_pipeline.errors import DataError
from ltr_pipeline.events.schema import Event
from ltr_pipeline.simulate import write_day

DEFAULT_DAY = date(2000, 1, 1)


@dataclass
class LetorData:
    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    qsizes: npt.NDArray[np.int64]


def read_svmlight(path: Path, query_file: Path | None = None, n_features: int | None = None) -> LetorData:
    """Parse an svmlight/LETOR file; `query_file` (default: <path>.query if present) gives group sizes."""
    labels: list[int] = []
    rows: list[dict[int, float]] = []
    qids: list[str] = []
    with Path(path).open() as fh:
        for line_no, line in enumerate(fh, start=1):
            body = line.split("#", 1)[0].split()
            if not body:
                continue
            try:
                labels.append(int(float(body[0])))
                row: dict[int, float] = {}
                for token in body[1:]:
                    key, _, value = token.partition(":")
                    if key == "qid":
                        qids.append(value)
                    else:
                        row[int(key)] = float(value)
            except ValueError as exc:
                raise DataError(f"{path}:{line_no}: not an svmlight line ({exc})") from None
            rows.append(row)
    width = n_features or max((max(r) for r in rows if r), default=0)
    features = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        for index, number in row.items():
            if 1 <= index <= width:
                features[i, index - 1] = number
    query_file = query_file or (Path(f"{path}.query") if Path(f"{path}.query").is_file() else None)
    if qids:
        _, starts = np.unique(np.array(qids), return_index=True)
        bounds = np.append(np.sort(starts), len(qids))
        qsizes = np.diff(bounds)
    elif query_file is not None:
        qsizes = np.array([int(x) for x in Path(query_file).read_text().split()], dtype=np.int64)
    else:
        raise DataError(f"{path} has no qid: and no .query file: cannot tell which rows form a query")
    if int(qsizes.sum()) != len(rows):
        raise DataError(f"query sizes add up to {int(qsizes.sum())}, but {path} has {len(rows)} rows")
    return LetorData(features, np.array(labels, dtype=np.int64), qsizes.astype(np.int64))


def to_events(data: LetorData, day: date, tag: str) -> list[Event]:
    names = [f"f{j + 1}" for j in range(data.features.shape[1])]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    events: list[Event] = []
    row = 0
    for q, size in enumerate(data.qsizes.tolist()):
        case = f"{tag}-q{q:06d}"
        ts = start + timedelta(seconds=q)  # keeps the file's query order through the time-ordered dataset
        for pos in range(1, size + 1):
            lawyer = f"d{pos:04d}"
            values = data.features[row].tolist()
            events.append(Event(f"r-{case}-{pos}", "recommendation", ts, case, lawyer, position=pos,
                                features=dict(zip(names, values, strict=True))))
            label = int(data.labels[row])
            if label > 0:
                events.append(Event(f"f-{case}-{pos}", "feedback", ts + timedelta(milliseconds=1), case, lawyer,
                                    action=f"label_{label}"))
            row += 1
    return events


def import_letor(train: Path, out: Path, test: Path | None = None, day: date = DEFAULT_DAY) -> dict[str, object]:
    """Write the files as events under <out>/events/ and the settings that read them to <out>/ltr.env."""
    first = read_svmlight(train)
    second = read_svmlight(test, n_features=first.features.shape[1]) if test else None
    width = first.features.shape[1]
    events_dir = Path(out) / "events"
    write_day(to_events(first, day, "train"), events_dir, day)
    last = day
    if second is not None:
        last = day + timedelta(days=1)
        write_day(to_events(second, last, "test"), events_dir, last)
    labels = sorted({int(v) for v in np.concatenate([first.labels, second.labels if second else []])})
    grades = {f"label_{v}": v for v in labels if v > 0}
    env = {
        "LTR_EVENTS_DIR": str(events_dir.resolve()),
        "LTR_FEATURES": ",".join(f"f{j + 1}" for j in range(width)),
        "LTR_LABEL_GRADES": orjson.dumps(grades).decode(),
        "LTR_TRAIN_DAYS": "2" if second is not None else "1",
        "LTR_HOLDOUT_DAYS": "1",
        "LTR_SOURCE": "file",
        # Judged relevance, not clicks: a line's place in the file is no position anyone examined.
        "LTR_DEBIAS": "none",
    }
    (Path(out) / "ltr.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    return {"train_queries": len(first.qsizes), "test_queries": len(second.qsizes) if second else 0,
            "rows": int(first.qsizes.sum() + (second.qsizes.sum() if second else 0)), "features": width,
            "labels": labels, "run_date": last.isoformat(), "env_file": str(Path(out) / "ltr.env")}
