"""Schemathesis hooks for tests/test_openapi.py (loaded by SCHEMATHESIS_HOOKS=openapi_check).

`GET /events?follow=1` (or `watch=1`) and `GET /logs?follow=1` are streams that end only when their client
leaves: a generated request with `follow` or `watch` would hold until the request timeout, so both are dropped
from every generated query (the streams themselves are checked by tests/test_openapi.py and tests/test_sse.py)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(query, dict):
        query.pop("follow", None)
        query.pop("watch", None)
    return query
