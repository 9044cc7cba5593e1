"""`orchestrator ui [--open]`: where the running daemon's dashboard is (its --http listener's /ui/), printed, and
with --open opened in the desktop's browser.

The page asks for a token (`orchestrator token create NAME --scope read|admin`); none is put in the URL, which
ends up in a browser's history and, with --open, in the argv of the browser's launcher.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit, urlunsplit

from ..core.errors import UserError
from .client import Client
from .exit_codes import EXIT_OK
from .render.common import to_json

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # a listener on every address is reached locally on loopback


def ui(args: argparse.Namespace) -> int:
    health = Client(args.state_dir).request("GET", "/health")
    listener = health.get("http")
    if not listener:
        raise UserError(f"the daemon for {args.state_dir} has no HTTP listener, so no dashboard: start it with "
                        "`orchestrator daemon --http 127.0.0.1:8420` (and make a token: orchestrator token create "
                        "NAME --scope read)")
    url = dashboard_url(str(listener))
    if args.output == "json":
        print(to_json({"url": url, "listener": listener}))
    else:
        print(url)
        print("log in with a token of `orchestrator token create NAME --scope read|admin`; from another machine, "
              f"tunnel the port: ssh -N -L {urlsplit(url).port}:127.0.0.1:{urlsplit(url).port} THIS_HOST",
              file=sys.stderr)
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            raise UserError(f"no browser could be started here: open {url} yourself")
    return EXIT_OK


def dashboard_url(listener: str) -> str:
    """The dashboard's URL on the listener at `listener` (a wildcard address becomes loopback's)."""
    parts = urlsplit(listener)
    host = parts.hostname or "127.0.0.1"
    host = WILDCARDS.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{shown}:{parts.port}", "/ui/", "", ""))
