"""Schemathesis hooks for tests/test_openapi.py (loaded by SCHEMATHESIS_HOOKS=openapi_check).

`GET /events?follow=1` is a stream that ends only when its client leaves: a generated request with `follow`
would hold until the request timeout, so `follow` is dropped from every generated query (the stream itself
is checked by test_answers_of_a_live_daemon_match_their_schemas)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(query, dict):
        query.pop("follow", None)
    return query
