"""GitSync webhooks, `POST /hooks/git/NAME` on the daemon's HTTP listener (daemon/http.py): how one is checked.

A webhook only asks a sync for a pass soon (GitSyncs.trigger coalesces bursts); its body is never read for
content, only authenticated: HMAC-SHA256 of the body with the sync's webhook secret, from GitHub's
`X-Hub-Signature-256: sha256=<hex>` or the generic `X-Signature: sha256=<hex>`, compared in constant time.
The secret is read from its owner-only file at each request (rotation needs no restart). Bodies are capped
(413 unread above MAX_BODY_BYTES).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from ..core.errors import UserError
from ..host.secrets import read_secret as read_file_secret
from .control import error_document

MAX_BODY_BYTES = 1 << 20  # GitHub's push payloads are far smaller; Argo CD's default cap is 50 MB


class HookTarget:
    """What the listener needs of the daemon: a sync's secret file, and a pass asked for."""

    def __init__(self, secret_file: Callable[[str], str | None], trigger: Callable[[str], None]) -> None:
        self.secret_file = secret_file  # None: no such sync, or it takes no webhooks
        self.trigger = trigger


def read_secret(path: str) -> bytes:
    """A sync's webhook secret (host/secrets.py's rules)."""
    return read_file_secret(path, "webhook secret file")


def signature_matches(secret: bytes, body: bytes, headers: Any) -> bool:
    """GitHub's X-Hub-Signature-256 or the generic X-Signature, `sha256=<hex>`, in constant time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    for name in ("X-Hub-Signature-256", "X-Signature"):
        given = headers.get(name)
        if given is not None and hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
            return True
    return False


def answer_hook(target: HookTarget, name: str, headers: Any, read: Callable[[int], bytes],
                ) -> tuple[int, dict[str, Any], bool, str]:
    """The answer to `POST /hooks/git/NAME`: (HTTP status, JSON document, whether the body was left unread
    and the connection must close, why it was refused for the daemon's log: "" when it was not, never a
    secret). `read(n)` reads n bytes of the body."""
    secret_file = target.secret_file(name) if name and "/" not in name else None
    if secret_file is None:
        return 404, error_document(404, "no such webhook"), True, ""
    length = headers.get("Content-Length")
    if length is None or not (length.isascii() and length.isdigit()) or len(length) > 12:
        return 411, error_document(411, "Content-Length required"), True, ""
    if int(length) > MAX_BODY_BYTES:
        return 413, error_document(413, f"body over {MAX_BODY_BYTES} bytes"), True, ""
    body = read(int(length))
    try:
        secret = read_secret(secret_file)
    except UserError as error:
        return 401, error_document(401, "signature not verified"), False, f"webhook of gitsync/{name} refused: {error}"
    if not signature_matches(secret, body, headers):
        return 401, error_document(401, "signature not verified"), False, f"webhook of gitsync/{name}: missing or wrong signature"
    target.trigger(name)
    return 202, {"queued": True}, False, ""
