"""Delivering one notification: the side effects of a Notifier (daemon/alerting.py decides what and when).

- webhook: POST the JSON body to the URL, signed with HMAC-SHA256 of the body under the key of `secret_file`
  (`X-Orchestrator-Signature: sha256=<hex>`), with headers whose values are read from files; no proxy from
  the environment, no redirect followed (it could carry the body to another host), bounded by `timeout`.
- exec: run the argv (no shell) in a process group of its own with the body on stdin, killed with its whole
  group at `timeout`, reaped here (host/bounded.py).

Raises DeliveryError with a message that never holds a secret (the files' contents are not in it, the URL's
query is cut). Files are read at each delivery, so a rotated secret counts from the next one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from ..core.errors import OrchestratorError, UserError
from .bounded import BoundedChild
from .secrets import read_secret

SIGNATURE_HEADER = "X-Orchestrator-Signature"
ANSWER_LIMIT = 4096  # bytes of a receiver's answer (or an exec's output) read, for the message
USER_AGENT = "orchestrator-notifier"


class DeliveryError(OrchestratorError):
    """A notification was not delivered; `retry`: worth trying again (a receiver down, a 5xx, a timeout)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is an answer, and a failed delivery


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def shown_url(url: str) -> str:
    """The URL as messages show it: scheme, host and port only (a path, a query or userinfo may hold a key,
    as a Slack hook's path does)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/…" if parts.path not in ("", "/") else "/", "", ""))


def post_webhook(url: str, body: bytes, secret_file: str | None, header_files: Sequence[tuple[str, str]],
                 timeout: float) -> int:
    """POST `body` to `url`; the receiver's status (2xx), else DeliveryError."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        for name, path in header_files:
            value = read_secret(path, f"header {name} file").decode("utf-8", "replace").strip()
            if any(c in value for c in "\r\n\0"):
                raise UserError(f"header {name} file {path}: its value must be one line (no line break or NUL)")
            headers[name] = value
        if secret_file:
            key = read_secret(secret_file, "webhook secret file")
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    except UserError as error:
        raise DeliveryError(str(error), retry=True) from None  # mended in the file, the next try may work
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    where = shown_url(url)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(ANSWER_LIMIT)
            return int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
        # 4xx other than 408/429 will not change by itself: still retried (a receiver misconfigured now may be
        # mended), but said so.
        raise DeliveryError(f"{where} answered HTTP {status}", retry=True) from None
    except ValueError:  # (said without its text: it may quote a header's value)
        raise DeliveryError(f"{where}: the request could not be made", retry=True) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DeliveryError(f"{where}: {getattr(reason, 'strerror', None) or reason}", retry=True) from None


def run_exec(command: Sequence[str], body: bytes, env: Mapping[str, str], timeout: float) -> None:
    """Run `command` with `body` on stdin and `env` as its whole environment; DeliveryError unless it exits 0
    within `timeout`."""
    with tempfile.TemporaryFile() as stdin:  # a file, not a pipe: a command that never reads cannot block us
        stdin.write(body)
        stdin.flush()
        stdin.seek(0)
        try:
            child = BoundedChild(list(command), dict(env), timeout, stdin=stdin.fileno(), name="notifier")
        except OSError as error:
            raise DeliveryError(f"cannot run {command[0]}: {error.strerror or error}", retry=True) from None
        assert child.stdout is not None
        # What it prints is not kept; read (on a thread) so that it never blocks. Its end is the leader's exit,
        # not the pipe's: a background child holding stdout is killed with the group by finish().
        drain = threading.Thread(target=_discard, args=(child.stdout,), name="notifier-stdout", daemon=True)
        drain.start()
        try:
            code, stderr = child.finish()
        finally:
            drain.join(5)
    if child.timed_out:
        raise DeliveryError(f"{command[0]} was killed at its timeout of {timeout:g}s", retry=True)
    if code != 0:
        said = stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
        raise DeliveryError(f"{command[0]} exited with {code}" + (f": {said}" if said else ""), retry=True)


def _discard(stream: IO[bytes]) -> None:
    try:
        while stream.read(1 << 16):
            pass
    except (OSError, ValueError):  # closed by finish()
        pass


def exec_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """What an exec notifier's environment holds: PATH, HOME, LANG of the daemon, and `extra`."""
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return {**base, **extra}
