"""A thin client of etcd's v3 JSON gateway for fleet mode: keys, transactions, leases and streaming watches
over one cluster given as several endpoints.

It wraps etcd3gw's Etcd3Client (one per endpoint, each with its own requests session) for what etcd3gw does
not do: failing over between the endpoints of one cluster, etcd authentication (a token from
/v3/auth/authenticate sent as the session's Authorization header, renewed once when etcd calls it invalid),
header revisions and compare-and-swap on revisions, utf-8 keys, and a watch whose death is known (etcd3gw's
Watcher has no timeout and swallows the end of its stream). Every request is bounded by `timeout` per
endpoint tried. Every failure is an EtcdError naming the endpoint(s) and the cause, never the password.

It owns no state of the orchestrator and decides nothing: the fleet agent calls it. Imported only in fleet
mode; single-host code never imports it.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw import exceptions as gw_errors

from ..core.errors import OrchestratorError, UserError
from .secrets import read_secret

API_PATH = "/v3/"  # etcd >= 3.4 serves the gateway here; naming it saves etcd3gw a GET /version per endpoint
MAX_WATCH_MESSAGE_BYTES = 64 * 1024 * 1024  # one watch response (a batch of events); etcd's own request limit is 1.5 MiB
WATCH_PROBE_SECONDS = 10.0  # how often a watch checks that its member still answers (a stopped member sends nothing)
STOP_JOIN_SECONDS = 1.0
RANGE_PAGE_KEYS = 500  # keys per range request: a big fleet is read in pages at one revision
MAX_RANGE_BYTES = 256 * 1024 * 1024  # a range larger than this is refused rather than held in memory
Guard = tuple[str, int]  # (key, create revision): a write goes through only while that key is the one created then


class EtcdError(OrchestratorError):
    """etcd could not be reached or refused: the message names the endpoint(s) and why, never a password."""


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd holds it; revisions are the cluster's, lease 0 means none."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


class _Unreachable(Exception):
    """This endpoint did not answer (refused, timed out, unavailable): the next one may."""


class _Refused(Exception):
    """The endpoint answered with an error: trying another member would get the same answer."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _int(value: Any) -> int:
    """An int64 of the gateway: a JSON string, absent when zero."""
    return int(value) if value is not None else 0


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(item.get("key", "")).decode("utf-8", "surrogateescape"),
        value=base64.b64decode(item.get("value", "")),
        create_revision=_int(item.get("create_revision")),
        mod_revision=_int(item.get("mod_revision")),
        lease=_int(item.get("lease")),
    )


def _prefix_end(prefix: str) -> bytes:
    data = bytearray(_key_bytes(prefix))
    while data and data[-1] == 0xFF:
        data.pop()
    if not data:
        return b"\0"
    data[-1] += 1
    return bytes(data)


def prefix_end(prefix: str) -> str:
    """The end of the key range of every key starting with `prefix`, for watch() ("\\0", all keys, for an empty
    prefix). It may not be valid utf-8: its odd bytes are kept as surrogates, which this client writes back."""
    return _prefix_end(prefix).decode("utf-8", "surrogateescape")


def _etcd_message(text: str | None) -> str:
    """What etcd said in an error body (`{"error": ..., "message": ..., "code": ...}`), briefly."""
    if not text:
        return ""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:200]
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):  # a watch stream's error
            body = inner
        for field in ("message", "error"):
            if isinstance(body.get(field), str) and body[field]:
                return str(body[field])
    return text.strip()[:200]


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def _network_cause(error: BaseException, detail: str | None, timeout: float) -> str:
    """A short cause for a request that got no answer, from requests' long exception text."""
    text = detail if detail is not None else str(error)
    if "ConnectionPool(host=" not in text:  # an answer of etcd (503 no leader, 504): what it said
        return _etcd_message(text) or type(error).__name__
    if "timed out" in text.lower():
        return f"no answer within {timeout:g} s"
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip().lower()
    return text.split("(Caused by ", 1)[-1].rstrip(")")[:200]


class _Endpoint:
    """One member's URL, etcd3gw client and session; the auth token its session carries."""

    def __init__(self, url: str, timeout: float, ca_file: str | None, cert_file: str | None,
                 key_file: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EtcdError(f"etcd endpoint {url!r}: expected http://host:port or https://host:port")
        try:
            port = parts.port or 2379
        except ValueError:
            raise EtcdError(f"etcd endpoint {url!r}: bad port") from None
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.session = requests.Session()
        if ca_file is not None:
            self.session.verify = ca_file
        if cert_file is not None and key_file is not None:
            self.session.cert = (cert_file, key_file)
        self.client = etcd3gw.Etcd3Client(host=parts.hostname, port=port, protocol=parts.scheme, timeout=timeout,
                                          api_path=API_PATH, session=self.session)
        self.authenticated = False
        self.answered_at: float | None = None  # monotonic: when this member last answered a request


class Etcd:
    """A client of one etcd cluster through its JSON gateway; several endpoints are members of that cluster.

    A request that cannot reach an endpoint (refused, timed out, member unavailable) tries the next one, and
    the endpoint that answered is tried first next time. A call takes about `timeout` per endpoint at most.
    A retried put or transaction may have been applied by the member that timed out: create() can then answer
    (False, the key it created itself), which a caller sees by its value and lease.
    Thread-safe: the fleet agent calls it from its loop and the watches' threads.
    """

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 2.0, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, user: str | None = None,
                 password_file: str | None = None, patience: float = 0.0) -> None:
        if isinstance(endpoints, str) or not endpoints:
            raise EtcdError("etcd: no endpoints given (a list of http(s)://host:port)")
        if (user is None) != (password_file is None):
            raise EtcdError("etcd: user and password_file go together")
        if (cert_file is None) != (key_file is None):
            raise EtcdError("etcd: cert_file and key_file go together")
        self._timeout = timeout
        # A call that finds no endpoint answering, while some member is up (it timed out or said "no leader" or
        # "leader changed", rather than refusing the connection), tries them all again after 0.1 s, 0.2 s...,
        # until this many seconds have passed: a cluster that lost its leader answers again once it elected
        # one. 0 (the agent's: it has its own retries and deadlines): one round.
        self._patience = patience
        self._endpoints = [_Endpoint(url, timeout, ca_file, cert_file, key_file) for url in endpoints]
        self._preferred = 0
        self._user = user
        self._password_file = password_file
        self._auth_lock = threading.Lock()
        self._watches: set[Watch] = set()
        self._watches_lock = threading.Lock()
        if password_file is not None:
            self._read_password()  # a missing or unsafe file is said now, not at the first request

    # -- requests, failover and authentication

    def _read_password(self) -> str:
        """The password in the file, stripped: read at each authentication, so a rotated file is used. Read as
        every secret file is (host/secrets.py: owner-only, no symlink, at most 4 KiB)."""
        assert self._password_file is not None
        try:
            data = read_secret(self._password_file, "etcd password file")
        except UserError as error:
            raise EtcdError(str(error)) from None
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise EtcdError(f"etcd password file {self._password_file} is not utf-8") from None

    def _post(self, endpoint: _Endpoint, path: str, payload: dict[str, Any],
              secret: str | None = None) -> dict[str, Any]:
        """One request to one endpoint: its answer, _Unreachable or _Refused (with a message free of `secret`)."""
        try:
            answer = endpoint.client.post(endpoint.client.get_url(path), json=payload)
        except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError) as error:
            # etcd3gw maps 503 (no leader, member stopping) and 408/504 here too: another member may do
            raise _Unreachable(self._redact(_network_cause(error, error.detail_text, self._timeout), secret)) from None
        except gw_errors.Etcd3Exception as error:
            message = _etcd_message(error.detail_text) or " ".join(str(arg) for arg in error.args)
            raise _Refused(self._redact(message or type(error).__name__, secret)) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise _Unreachable(self._redact(_network_cause(error, None, self._timeout), secret)) from None
        except (requests.RequestException, ValueError) as error:  # a broken answer (bad JSON, chunking, URL)
            raise _Refused(self._redact(f"{type(error).__name__}: {error}"[:300], secret)) from None
        endpoint.answered_at = time.monotonic()
        if not isinstance(answer, dict):
            raise _Refused("answer is not a JSON object")
        return answer

    @staticmethod
    def _redact(message: str, secret: str | None) -> str:
        return message.replace(secret, "***") if secret else message

    def _authenticate(self, endpoint: _Endpoint) -> None:
        password = self._read_password()
        endpoint.session.headers.pop("Authorization", None)
        answer = self._post(endpoint, "auth/authenticate", {"name": self._user, "password": password}, password)
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise _Refused("authentication answered no token")
        endpoint.session.headers["Authorization"] = token
        endpoint.authenticated = True

    def _on_endpoint(self, endpoint: _Endpoint, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._user is not None and not endpoint.authenticated:
            with self._auth_lock:
                if not endpoint.authenticated:
                    self._authenticate(endpoint)
        try:
            return self._post(endpoint, path, payload)
        except _Refused as error:
            if self._user is None or "invalid auth token" not in str(error):
                raise
        with self._auth_lock:  # the token expired (etcd forgets idle simple tokens): once more with a new one
            self._authenticate(endpoint)
        return self._post(endpoint, path, payload)

    def _each_endpoint(self) -> Iterator[tuple[int, _Endpoint]]:
        start = self._preferred
        for offset in range(len(self._endpoints)):
            index = (start + offset) % len(self._endpoints)
            yield index, self._endpoints[index]

    def _call(self, path: str, payload: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """`payload` to the first endpoint that answers. With `deadline` (monotonic), no endpoint is tried that
        could not answer before it (an attempt takes at most twice the timeout: connecting, then reading)."""
        give_up = time.monotonic() + self._patience
        pause = 0.1
        while True:
            failures = self._call_round(path, payload, deadline)
            if not isinstance(failures, list):
                return failures
            left = give_up - time.monotonic()
            if deadline is not None or left <= 0 or all(f.endswith(": connection refused") for f in failures):
                raise EtcdError(f"etcd unreachable ({path}): " + "; ".join(failures))
            time.sleep(min(pause, left))
            pause *= 2

    def _call_round(self, path: str, payload: dict[str, Any], deadline: float | None,
                    ) -> dict[str, Any] | list[str]:
        """One try of every endpoint: the first answer, or why each failed."""
        failures = []
        for index, endpoint in self._each_endpoint():
            if deadline is not None and time.monotonic() + 2 * self._timeout > deadline:
                failures.append(f"{endpoint.url}: not tried, no time left before the deadline")
                break
            try:
                answer = self._on_endpoint(endpoint, path, payload)
            except _Unreachable as error:
                failures.append(f"{endpoint.url}: {error}")
                continue
            except _Refused as error:
                self._preferred = index
                raise EtcdError(f"etcd {endpoint.url} refused {path}: {error}") from None
            self._preferred = index
            return answer
        return failures

    # -- keys

    def range(self, prefix: str, *, page: int = RANGE_PAGE_KEYS,
              max_bytes: int = MAX_RANGE_BYTES) -> tuple[int, list[KeyValue]]:
        """Every key starting with `prefix`, sorted by key, and the revision of the store they were read at:
        read `page` keys at a time, every page at the first one's revision, so that they agree; more than
        `max_bytes` of keys and values is an EtcdError, not an unbounded answer."""
        start = _key_bytes(prefix) or b"\0"  # etcd's "every key": an empty key is refused
        end = _b64(_prefix_end(prefix))
        revision = 0
        found: list[KeyValue] = []
        size = 0
        while True:
            request = {"key": _b64(start), "range_end": end, "sort_order": "ASCEND", "sort_target": "KEY",
                       "limit": str(page)}
            if revision:
                request["revision"] = str(revision)
            answer = self._call("kv/range", request)
            if not revision:
                revision = _int(answer.get("header", {}).get("revision"))
            items = [_kv(item) for item in answer.get("kvs", [])]
            size += sum(len(kv.key) + len(kv.value) for kv in items)
            if size > max_bytes:
                raise EtcdError(f"etcd range {prefix}: more than {max_bytes:,} bytes of keys and values")
            found += items
            if not answer.get("more") or not items:
                return revision, found
            start = _key_bytes(items[-1].key) + b"\0"

    def get(self, key: str) -> KeyValue | None:
        answer = self._call("kv/range", {"key": _b64(_key_bytes(key))})
        kvs = answer.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Set `key`; the revision of the store after it."""
        answer = self._call("kv/put", self._put_request(key, value, lease))
        return _int(answer.get("header", {}).get("revision"))

    @staticmethod
    def _put_request(key: str, value: bytes, lease: int) -> dict[str, Any]:
        request: dict[str, Any] = {"key": _b64(_key_bytes(key)), "value": _b64(value)}
        if lease:
            request["lease"] = str(lease)
        return request

    def _txn(self, compare: dict[str, Any], success: dict[str, Any],
             failure: dict[str, Any] | None = None, guard: Guard | None = None) -> dict[str, Any]:
        compares = [compare]
        if guard is not None:  # and the guard key is still the one created at that revision
            compares.append({"key": _b64(_key_bytes(guard[0])), "result": "EQUAL", "target": "CREATE",
                             "create_revision": str(guard[1])})
        return self._call("kv/txn", {"compare": compares, "success": [success],
                                     "failure": [failure] if failure else []})

    @staticmethod
    def _compare(key: str, mod_revision: int) -> dict[str, Any]:
        """The key is unchanged since `mod_revision`; with 0, the key does not exist."""
        if mod_revision == 0:
            return {"key": _b64(_key_bytes(key)), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}
        return {"key": _b64(_key_bytes(key)), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}

    def create(self, key: str, value: bytes, lease: int = 0) -> tuple[bool, KeyValue | None]:
        """Set `key` only if it does not exist: (True, the new key) or (False, the key that exists)."""
        answer = self._txn(self._compare(key, 0), {"request_put": self._put_request(key, value, lease)},
                           {"request_range": {"key": _b64(_key_bytes(key))}})
        if answer.get("succeeded"):
            revision = _int(answer.get("header", {}).get("revision"))
            return True, KeyValue(key, value, revision, revision, lease)
        for response in answer.get("responses", []):
            kvs = response.get("response_range", {}).get("kvs", [])
            if kvs:
                return False, _kv(kvs[0])
        return False, None

    def replace(self, key: str, value: bytes, mod_revision: int, lease: int = 0, guard: Guard | None = None) -> bool:
        """Set `key` only if its mod_revision is still `mod_revision` (0: only if it does not exist), and with
        `guard` (key, create revision), only while that key is the one created then (an election still held)."""
        answer = self._txn(self._compare(key, mod_revision), {"request_put": self._put_request(key, value, lease)},
                           guard=guard)
        return bool(answer.get("succeeded"))

    def delete(self, key: str, mod_revision: int | None = None, guard: Guard | None = None) -> bool:
        """Delete `key` (with `mod_revision`, only if unchanged since, and with `guard` as replace's); whether a
        key was deleted."""
        request = {"key": _b64(_key_bytes(key))}
        if mod_revision is None and guard is None:
            return _int(self._call("kv/deleterange", request).get("deleted")) > 0
        if mod_revision is None:
            compare = {"key": request["key"], "result": "GREATER", "target": "CREATE", "create_revision": "0"}
        else:
            compare = self._compare(key, mod_revision)
        answer = self._txn(compare, {"request_delete_range": request}, guard=guard)
        if not answer.get("succeeded"):
            return False
        return any(_int(response.get("response_delete_range", {}).get("deleted")) > 0
                   for response in answer.get("responses", []))

    # -- leases

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds: its id."""
        answer = self._call("lease/grant", {"TTL": str(ttl)})
        if answer.get("error"):
            raise EtcdError(f"etcd refused lease/grant: {answer['error']}")
        return _int(answer.get("ID"))

    def keepalive(self, lease: int, deadline: float | None = None) -> int:
        """Renew `lease`: its new TTL in seconds, or -1 when it no longer exists (expired or revoked). With
        `deadline` (monotonic), an EtcdError rather than an answer after it (see _call)."""
        answer = self._call("lease/keepalive", {"ID": str(lease)}, deadline)
        result = answer.get("result", answer)
        ttl = result.get("TTL") if isinstance(result, dict) else None
        return int(ttl) if ttl is not None and int(ttl) > 0 else -1

    def revoke(self, lease: int) -> None:
        """End `lease` and delete its keys; a lease that no longer exists is no error."""
        try:
            self._call("lease/revoke", {"ID": str(lease)})
        except EtcdError as error:
            if "lease not found" not in str(error):
                raise

    # -- watches

    def watch(self, start: str, end: str, on_event: Callable[[], None], start_revision: int | None = None, *,
              probe_every: float = WATCH_PROBE_SECONDS) -> Watch:
        """Watch the keys in [start, end) (end "": the key `start` only; prefix_end() gives a prefix's end).

        on_event() is called from the watch's thread after each batch of events, and once more when the stream
        ends other than by stop(): it only means "look again" (and see `.alive`). Every `probe_every` seconds
        the watch checks that its member still answers a linearizable read (unless it answered another request
        of this client meanwhile): a stopped or partitioned member sends nothing and would leave a stream that
        looks alive. Opening fails over like any request.
        """
        create: dict[str, Any] = {"key": _b64(_key_bytes(start) or b"\0"), "progress_notify": True}
        if end:
            create["range_end"] = _b64(_key_bytes(end))
        if start_revision is not None:
            create["start_revision"] = str(start_revision)
        failures = []
        for index, endpoint in self._each_endpoint():
            try:
                watch = self._open_watch(endpoint, {"create_request": create}, on_event, probe_every, start)
            except _Unreachable as error:
                failures.append(f"{endpoint.url}: {error}")
                continue
            except _Refused as error:
                raise EtcdError(f"etcd {endpoint.url} refused watch: {error}") from None
            self._preferred = index
            with self._watches_lock:
                self._watches.add(watch)
            return watch
        raise EtcdError("etcd unreachable (watch): " + "; ".join(failures))

    def _open_watch(self, endpoint: _Endpoint, request: dict[str, Any], on_event: Callable[[], None],
                    probe_every: float, probe_key: str) -> Watch:
        for attempt in range(2):
            if self._user is not None and (attempt or not endpoint.authenticated):
                with self._auth_lock:
                    self._authenticate(endpoint)
            try:
                stream = _WatchStream.open(endpoint, request, self._timeout)
            except _Refused as error:
                if self._user is None or "auth token" not in str(error) or attempt:
                    raise
                continue
            first = stream.first_message()
            result = first.get("result", {}) if "error" not in first else {}
            if result.get("created") and not result.get("canceled"):
                break
            stream.close()
            reason = result.get("cancel_reason") or _etcd_message(json.dumps(first))
            if self._user is None or "auth token" not in reason or attempt:
                raise _Refused(f"watch not created: {reason}")

        def probe() -> None:
            answered = endpoint.answered_at
            if answered is not None and time.monotonic() - answered < probe_every:
                return  # it answered another request lately (a keepalive): no need to ask
            self._post(endpoint, "kv/range", {"key": _b64(_key_bytes(probe_key) or b"\0"), "keys_only": True,
                                              "limit": "1"})

        return Watch(stream, on_event, probe, probe_every, self._forget_watch)

    def _forget_watch(self, watch: Watch) -> None:
        with self._watches_lock:
            self._watches.discard(watch)

    def close(self) -> None:
        """Stop every watch of this client and close its connections."""
        with self._watches_lock:
            watches = list(self._watches)
        for watch in watches:
            watch.stop()
        for endpoint in self._endpoints:
            endpoint.session.close()


def write_record(etcd: Etcd, key: str, value: bytes, current: KeyValue | None, same: Callable[[KeyValue], bool],
                 tries: int, guard: Guard | None = None, lost: Callable[[], None] | None = None) -> str | None:
    """Put `value` at `key` unless the key holds it already (`same` of what it holds): "created", "configured"
    or "unchanged". Optimistic: written only while the key is as read (`current`; None: absent), and with
    `guard`, while that holds too. After a refused write, `lost()` may raise (the guard no longer holds), then
    the key is read and compared again; None once `tries` writes were refused."""
    for _ in range(tries):
        if current is not None and same(current):
            return "unchanged"
        if etcd.replace(key, value, current.mod_revision if current is not None else 0, guard=guard):
            return "created" if current is None else "configured"
        if lost is not None:
            lost()
        current = etcd.get(key)
    return None


class _WatchStream:
    """The response of POST /v3/watch: newline-delimited JSON messages, read with a bound on each message."""

    def __init__(self, endpoint: _Endpoint, response: requests.Response, timeout: float) -> None:
        self.url = endpoint.url
        self._timeout = timeout
        self._response = response
        self._chunks = response.iter_content(chunk_size=None)
        self._buffer = b""
        connection = getattr(response.raw, "connection", None)
        self._socket: socket.socket | None = getattr(connection, "sock", None)

    @classmethod
    def open(cls, endpoint: _Endpoint, request: dict[str, Any], timeout: float) -> _WatchStream:
        try:
            response = endpoint.session.post(endpoint.client.get_url("watch"), json=request, stream=True,
                                             timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise _Unreachable(_network_cause(error, None, timeout)) from None
        except requests.RequestException as error:
            raise _Refused(f"{type(error).__name__}: {error}"[:300]) from None
        if response.status_code != 200:
            text = response.text[:4096]
            response.close()
            if response.status_code in (408, 503, 504):
                raise _Unreachable(_etcd_message(text) or f"HTTP {response.status_code}")
            raise _Refused(_etcd_message(text) or f"HTTP {response.status_code}")
        return cls(endpoint, response, timeout)

    def first_message(self) -> dict[str, Any]:
        """The first message, read within the request's timeout; after it the stream waits as long as it must
        (the probe, not a read timeout, says when the member is gone)."""
        try:
            message = self.next_message()
        except (requests.ConnectionError, requests.Timeout) as error:
            self.close()
            raise _Unreachable(_network_cause(error, None, self._timeout)) from None
        except (requests.RequestException, ValueError, _Refused) as error:
            self.close()
            raise _Refused(str(error)) from None
        if message is None:
            self.close()
            raise _Unreachable("watch stream ended at once")
        if self._socket is not None:
            self._socket.settimeout(None)
        return message

    def next_message(self) -> dict[str, Any] | None:
        """The next message, or None when the stream ended."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_WATCH_MESSAGE_BYTES:
                raise _Refused(f"a watch message is longer than {MAX_WATCH_MESSAGE_BYTES} bytes")
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        if not line.strip():
            return self.next_message()
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("a watch message is not a JSON object")  # noqa: TRY004 - bad input, as json's own
        return message

    def interrupt(self) -> None:
        """Wake the reader blocked on the socket (it then sees the end of the stream)."""
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.interrupt()
        self._response.close()


class Watch:
    """A running watch (Etcd.watch): `.alive` until its stream ends or fails, `.stop()` to end it, `.error`
    says why it ended on its own (None while alive or when stopped)."""

    def __init__(self, stream: _WatchStream, on_event: Callable[[], None], probe: Callable[[], None],
                 probe_every: float, forget: Callable[[Watch], None]) -> None:
        self.url = stream.url
        self.error: str | None = None
        self._stream = stream
        self._on_event = on_event
        self._probe = probe
        self._probe_every = probe_every
        self._forget = forget
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"etcd-watch {self.url}", daemon=True)
        self._prober = threading.Thread(target=self._check, name=f"etcd-watch-probe {self.url}", daemon=True)
        self._reader.start()
        self._prober.start()

    @property
    def alive(self) -> bool:
        return not self._done.is_set()

    def _fail(self, why: str) -> None:
        if self.error is None and not self._stopping.is_set():
            self.error = f"etcd watch on {self.url}: {why}"
        self._stream.interrupt()

    def _read(self) -> None:
        try:
            while True:
                message = self._stream.next_message()
                if message is None:
                    self._fail("the stream ended")
                    return
                if "error" in message:
                    self._fail(_etcd_message(json.dumps(message)))
                    return
                result = message.get("result", {})
                if result.get("canceled"):
                    compacted = result.get("compact_revision")
                    why = f"compacted at revision {compacted}" if compacted else result.get("cancel_reason", "")
                    self._fail(f"canceled by etcd: {why}")
                    return
                if result.get("events"):
                    self._on_event()
        except (requests.RequestException, ValueError, _Refused, OSError) as error:
            self._fail(f"{type(error).__name__}: {error}"[:300])
        except Exception as error:  # noqa: BLE001 - from on_event: the watch ends, the caller watches again
            self._fail(f"on_event raised {type(error).__name__}: {error}"[:300])
        finally:
            self._done.set()
            self._stream.close()
            self._forget(self)
            if not self._stopping.is_set():
                try:
                    self._on_event()  # "look again": the caller finds the watch dead
                except Exception:  # noqa: BLE001, S110 - it failed already; the watch is over either way
                    pass

    def _check(self) -> None:
        while not self._done.wait(self._probe_every):
            try:
                self._probe()
            except _Unreachable as error:
                self._fail(f"member does not answer: {error}")
                return
            except _Refused:
                pass  # it answered

    def stop(self) -> None:
        """End the watch; its thread is joined within about a second. on_event is not called for this."""
        self._stopping.set()
        self._stream.interrupt()
        self._reader.join(STOP_JOIN_SECONDS)
        self._done.set()
        self._prober.join(0.1)  # a probe in flight ends within its timeout, harmlessly
