"""`orchestrator cronjob list|trigger`: the CronJobs the daemon keeps (daemon/cronjobs.py). Their runs are Jobs:
`get`, `describe` and `logs` show them like any other."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .client import Client
from .exit_codes import EXIT_OK
from .render.common import ago_text, cell_text, table_text, to_json


def list_cronjobs(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("GET", "/cronjobs")
    if args.output == "json":
        print(to_json(answer))
        return EXIT_OK
    print(cronjobs_table(answer.get("cronjobs", []), time.time()))
    return EXIT_OK


def cronjobs_table(items: list[dict[str, Any]], now: float) -> str:
    """NAME SCHEDULE ZONE SUSPEND ACTIVE LAST-SCHEDULE NEXT LAST-SUCCESS, as kubectl's `get cronjobs`."""
    if not items:
        return "No CronJobs."
    rows = []
    for item in items:
        schedule = item.get("schedule") or f"every {item.get('interval_seconds'):g}s"
        upcoming = item.get("next_schedule")
        rows.append([cell_text(item.get("key")), schedule, cell_text(item.get("time_zone")),
                     "yes" if item.get("suspend") else "no", str(len(item.get("active") or [])),
                     ago_text(item.get("last_schedule"), now),
                     f"in {max(0, int(upcoming - now))}s" if isinstance(upcoming, (int, float)) else "-",
                     ago_text(item.get("last_success"), now)])
    return table_text(["NAME", "SCHEDULE", "ZONE", "SUSPEND", "ACTIVE", "LAST-SCHEDULE", "NEXT", "LAST-SUCCESS"], rows)


def trigger(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("POST", "/cronjobs/trigger", {"name": args.name})
    print(f"job/{answer['job']} created (from cronjob/{answer['cronjob']})")
    return EXIT_OK
