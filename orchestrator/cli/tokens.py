"""`orchestrator token create|list|revoke`: the API tokens of the daemon's TCP listener (host/tokens.py).

They work on the state dir's tokens.json directly, with no daemon: the daemon reads the file at each use, so a
token made or revoked here counts from the listener's next request. Owns the views: a created token's text on
stdout alone (for `TOKEN=$(orchestrator token create ci --scope read)`), what it is on stderr, and the table
of `list`. Never: a token's text or digest in `list`, or a token's text anywhere but `create`'s stdout.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..core.errors import UserError
from ..host.tokens import create_token, load_tokens, revoke_token
from .exit_codes import EXIT_OK
from .render.common import ago_text, cell_text, table_text, to_json


def create(args: argparse.Namespace) -> int:
    now = time.time()
    token = create_token(args.state_dir, args.token_name, args.scope, now)
    if args.output == "json":
        print(to_json({"name": args.token_name, "scope": args.scope, "created": now, "token": token}))
    else:
        print(token)
    print(f"token {args.token_name} (scope {args.scope}) created: it is shown only now; send it as "
          "`Authorization: Bearer <token>`", file=sys.stderr)
    return EXIT_OK


def list_tokens(args: argparse.Namespace) -> int:
    tokens = sorted(load_tokens(args.state_dir), key=lambda token: token.name)
    if args.output == "json":
        print(to_json({"tokens": [{"name": t.name, "scope": t.scope, "created": t.created} for t in tokens]}))
    elif not tokens:
        print("No tokens.")
    else:
        now = time.time()
        print(table_text(["NAME", "SCOPE", "CREATED"],
                         [[cell_text(t.name), t.scope, ago_text(t.created, now)] for t in tokens]))
    return EXIT_OK


def revoke(args: argparse.Namespace) -> int:
    if not revoke_token(args.state_dir, args.token_name):
        raise UserError(f"no token named {cell_text(args.token_name)}")  # main.py: on stderr, exit 1
    print(f"token {args.token_name} revoked")
    return EXIT_OK
