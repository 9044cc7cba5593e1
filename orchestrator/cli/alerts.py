"""`orchestrator alerts [history|silence|unsilence]` and `orchestrator notify test NAME`: the daemon's alerts
(daemon/alerting.py), read and silenced through the API. Owns their views: the table of active alerts, the
history of alert events, and the outcome of a test notification.
"""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any

from .client import Client
from .exit_codes import EXIT_FAILED, EXIT_OK
from .render.common import ago_text, cell_text, table_text, to_json
from .render.events import events_table


def alerts(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("GET", "/alerts")
    if args.output == "json":
        print(to_json(answer))
        return EXIT_OK
    print(alerts_table(answer, time.time()))
    return EXIT_OK


def alerts_table(answer: dict[str, Any], now: float) -> str:
    """NAME PROCESS STATE SINCE VALUE SEVERITY, one row per pending or firing alert; then the silences."""
    rows = []
    for alert in answer.get("alerts", []):
        labels = alert.get("labels", {})
        process = f"{labels.get('namespace')}/{labels.get('process')}[{labels.get('replica')}]" \
            if labels.get("process") else "-"
        since = alert.get("fired_at") if alert.get("state") == "firing" else alert.get("active_at")
        state = str(alert.get("state")) + (" (muted)" if alert.get("muted") else "")
        value = alert.get("value")
        rows.append([cell_text(alert.get("rule")), process, state, ago_text(since, now),
                     "-" if value is None else f"{value:.4g}", cell_text(labels.get("severity"))])
    lines = [table_text(["NAME", "PROCESS", "STATE", "SINCE", "VALUE", "SEVERITY"], rows) if rows else "No alerts."]
    silences = answer.get("silences", [])
    if silences:
        lines.append("")
        lines.append(table_text(["SILENCE", "MATCHES", "UNTIL", "REASON"], [
            [cell_text(s.get("id")), ",".join(f"{k}={v}" for k, v in sorted(s.get("matchers", {}).items())),
             f"in {max(0, int(s.get('until', now) - now))}s", cell_text(s.get("reason") or "-")] for s in silences]))
    if not answer.get("rules"):
        lines.append("(no AlertRule is kept: apply one, kind: AlertRule)")
    return "\n".join(lines)


def history(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("GET", f"/alerts/history?limit={args.limit}")
    if args.output == "json":
        print(to_json(answer))
        return EXIT_OK
    events = answer.get("events", [])
    print(events_table(events, time.time()) if events else "No alert events.")
    return EXIT_OK


def silence(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"for_seconds": args.for_seconds, "reason": args.reason, "by": getpass.getuser()}
    if args.rule:
        body["rule"] = args.rule
    if args.process:
        body["process"] = args.process
    answer = Client(args.state_dir).request("POST", "/alerts/silence", body)["silence"]
    if args.output == "json":
        print(to_json(answer))
    else:
        shown = ",".join(f"{k}={v}" for k, v in sorted(answer["matchers"].items()))
        print(f"silence {answer['id']} of {shown} for {args.for_seconds:g}s")
    return EXIT_OK


def unsilence(args: argparse.Namespace) -> int:
    Client(args.state_dir).request("POST", "/alerts/unsilence", {"id": args.id})
    print(f"silence {args.id} ended")
    return EXIT_OK


def notify_test(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("POST", "/notifiers/test", {"name": args.name})
    if args.output == "json":
        print(to_json(answer))
    elif answer.get("delivered"):
        print(f"a test notification reached {args.name} in {answer.get('seconds')}s")
    else:
        print(f"the test notification did not reach {args.name}: {answer.get('error')}")
    return EXIT_OK if answer.get("delivered") else EXIT_FAILED
