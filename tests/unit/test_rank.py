"""Parsing a ranking request: one numpy row per candidate, missing features NaN, wrong types refused by name."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from ltr_pipeline.service.rank import MAX_CANDIDATES, BadRequest, parse_rank_request


def _body(*features: dict[str, object], **extra: object) -> bytes:
    return orjson.dumps({"candidates": [{"lawyer_id": f"l{i}", "features": f, "group": "g" if i else None}
                                        for i, f in enumerate(features)], **extra})


def test_rows_follow_the_configured_feature_order_and_missing_is_nan() -> None:
    case_id, ids, groups, matrix = parse_rank_request(
        _body({"b": 2, "a": 1.5}, {"a": 3}, {"a": None, "b": 4, "unused": 7}), ["a", "b"])
    assert case_id is None and ids == ["l0", "l1", "l2"] and groups == [None, "g", "g"]
    np.testing.assert_array_equal(matrix, [[1.5, 2.0], [3.0, np.nan], [np.nan, 4.0]])
    single = parse_rank_request(_body({"a": 1}, {"b": 1}), ["a"])[3]  # one feature: still one column
    np.testing.assert_array_equal(single, [[1.0], [np.nan]])


@pytest.mark.parametrize(("raw", "message"), [
    (_body({"a": True}), r"got `bool` - at `\$.candidates\[0\].features.a`"),
    (_body({"a": 1}, {"b": "1.5"}), r"got `str` - at `\$.candidates\[1\].features.b`"),
    (b"not json", "not valid JSON"),
    (b'{"candidates": []}', "1 to"),
    (_body({"a": 1}, case_id=""), r"length >= 1 - at `\$.case_id`"),
    (_body({"a": 1}, case_id="c" * 257), r"length <= 256 - at `\$.case_id`"),
    (b'{"candidates": [{"features": {}}]}', "lawyer_id"),
    (b'{"candidates": [{"lawyer_id": "", "features": {}}]}', r"length >= 1 - at `\$.candidates\[0\].lawyer_id`"),
    (orjson.dumps({"candidates": [{"lawyer_id": "l" * 257, "features": {}}]}), r"length <= 256"),
    (orjson.dumps({"candidates": [{"lawyer_id": "l", "features": {}, "group": "g" * 257}]}), r"length <= 256"),
    (orjson.dumps({"candidates": [{"lawyer_id": "x", "features": {}}] * (MAX_CANDIDATES + 1)}), "1 to"),
])
def test_bad_requests_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_rank_request(raw, ["a", "b"])
