"""A tiny stack for the example manifests, standard library only.

    stack.py db        a key-value store on TCP (one line per request: GET key / SET key value)
    stack.py migrate   a job: waits for the db, then writes the schema version and exits 0
    stack.py api       an HTTP server: /healthz, and / which reads the schema version from the db
    stack.py worker    polls the api every few seconds and prints what it gets
"""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import sys
import time
import urllib.request

DB = ("127.0.0.1", int(os.environ.get("DB_PORT", "17001")))
API_PORT = int(os.environ.get("API_PORT", "17080"))


def db() -> None:
    data: dict[str, str] = {}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                parts = raw.decode().split(maxsplit=2)
                if parts[:1] == ["SET"] and len(parts) == 3:
                    data[parts[1]] = parts[2].strip()
                    self.wfile.write(b"OK\n")
                elif parts[:1] == ["GET"] and len(parts) == 2:
                    self.wfile.write((data.get(parts[1], "") + "\n").encode())
                else:
                    self.wfile.write(b"ERR\n")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(DB, Handler) as server:
        print(f"db listening on {DB[0]}:{DB[1]}", flush=True)
        server.serve_forever()


def ask(line: str) -> str:
    with socket.create_connection(DB, timeout=2) as conn:
        conn.sendall(line.encode() + b"\n")
        return conn.makefile().readline().strip()


def migrate() -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            print("migrate:", ask("SET schema 3"), flush=True)
            return
        except OSError as error:
            if time.monotonic() > deadline:
                sys.exit(f"migrate: db unreachable: {error}")
            time.sleep(0.2)


def api() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok\n" if self.path == "/healthz" else f"schema {ask('GET schema')}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print(f"api: {self.command} {self.path}", flush=True)

    if os.environ.get("LISTEN_PID") == str(os.getpid()):  # the orchestrator's socket, at fd 3 (systemd's way)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", API_PORT), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = socket.socket(fileno=3)
        where = "the orchestrator's socket (fd 3)"
    else:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        server = http.server.ThreadingHTTPServer(("127.0.0.1", API_PORT), Handler)
        where = f"127.0.0.1:{API_PORT}"
    with server:
        print(f"api listening on {where}", flush=True)
        if os.environ.get("NOTIFY_SOCKET"):  # ready: say so (sd_notify); a probe at the shared port would not tell
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
                notify.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"].replace("@", "\0", 1))
        server.serve_forever()


def worker() -> None:
    replica = os.environ.get("ORCH_REPLICA", "?")
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/", timeout=2) as response:
                print(f"worker {replica}: {response.read().decode().strip()}", flush=True)
        except OSError as error:
            print(f"worker {replica}: api not reachable: {error}", flush=True)
        time.sleep(float(os.environ.get("INTERVAL", "5")))


if __name__ == "__main__":
    try:
        {"db": db, "migrate": migrate, "api": api, "worker": worker}[sys.argv[1]]()
    except KeyboardInterrupt:
        pass  # SIGINT is how the worker is asked to stop
