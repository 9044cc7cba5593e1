"""`orchestrator queue [NAME]`: the Queues the daemon keeps (daemon/queues.py), each with its Jobs in
admission order: those running, then the suspended and waiting ones, each with why it waits."""

from __future__ import annotations

import argparse
from urllib.parse import quote

from .client import Client
from .exit_codes import EXIT_OK
from .render.common import cell_text, human_bytes, table_text, to_json


def queue(args: argparse.Namespace) -> int:
    route = "/queues" + (f"?name={quote(args.name, safe='')}" if args.name else "")
    answer = Client(args.state_dir).request("GET", route)
    if args.output == "json":
        print(to_json(answer))
        return EXIT_OK
    blocks = []
    for item in answer.get("queues", []):
        capacity = item.get("capacity") or {}
        limits = [f"maxConcurrent {item['max_concurrent']}" if item.get("max_concurrent") else "",
                  f"cpu {capacity['cpu']:g}" if capacity.get("cpu") else "",
                  f"memory {human_bytes(int(capacity['memory']))}" if capacity.get("memory") else "",
                  f"preemption {item.get('preemption')}"]
        head = f"queue {item['name']}: " + ", ".join(x for x in limits if x)
        rows = [[cell_text(j["key"]), cell_text(j["state"]), cell_text(j["priority"]), cell_text(j["reason"] or "-")]
                for j in item.get("jobs", [])]
        blocks.append(head + "\n" + (table_text(["JOB", "STATE", "PRIORITY", "WHY"], rows) if rows else "No Jobs."))
    print("\n\n".join(blocks) if blocks else "No Queues.")
    return EXIT_OK
