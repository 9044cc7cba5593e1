"""host/notifiers.py alone: what a failed delivery says never holds a secret (a header file's value, a URL's
path or query), and a header file whose value is not one line is refused by name."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.host.notifiers import DeliveryError, post_webhook, shown_url


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(dict(self.headers))
            self.send_response(500 if self.path.split("?", 1)[0].endswith("/fail") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_a_header_value_of_several_lines_is_refused_without_showing_it(
        tmp_path: Path, receiver: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = receiver
    header = secret_file(tmp_path, "auth", "Bearer SECRET123\ninjected: yes\n")
    with pytest.raises(DeliveryError) as raised:
        post_webhook(f"http://127.0.0.1:{port}/hook", b"{}", None, [("Authorization", header)], 5)
    assert "SECRET123" not in str(raised.value) and "auth" in str(raised.value) and seen == []


def test_a_failure_names_the_host_not_the_secret_path(tmp_path: Path,
                                                      receiver: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = receiver
    header = secret_file(tmp_path, "auth", "Bearer SECRET123\n")
    url = f"http://127.0.0.1:{port}/services/T0/B0/XSECRETX/fail?token=QSECRETQ"
    with pytest.raises(DeliveryError) as raised:
        post_webhook(url, b"{}", None, [("Authorization", header)], 5)
    message = str(raised.value)
    assert "HTTP 500" in message and f"127.0.0.1:{port}" in message
    assert not any(secret in message for secret in ("SECRET123", "XSECRETX", "QSECRETQ"))
    assert seen and seen[0]["Authorization"] == "Bearer SECRET123"  # sent, as the file holds it
    assert shown_url("https://u:p@hooks.example.org/services/a/b?x=1") == "https://hooks.example.org/…"
