"""${NAME} from the applying command's environment (compose's rules), and $(NAME) / $((...)) per replica.

The rules are table-tested as pure functions; then real daemons: apply from a shell with variables, a watch
that re-reads with the values its apply used, and three replicas of one spec serving three ports.
"""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, wait_for
from test_daemon import Orchestrator, documents, orch, process  # noqa: F401

from orchestrator.core.errors import ManifestError
from orchestrator.core.expand import expand
from orchestrator.manifests.interpolate import InterpolationError, interpolate
from orchestrator.manifests.loader import load_specs

VARIABLES = {"SET": "value", "EMPTY": "", "PORT": "8080"}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain $HOME and $$ and $(date)", "plain $HOME and $$ and $(date)"),  # only ${ is special
    ("${SET}", "value"),
    ("a-${SET}-b", "a-value-b"),
    ("${UNSET:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY-fallback}", ""),
    ("${UNSET-fallback}", "fallback"),
    ("${SET:+other}", "other"),
    ("${EMPTY:+other}", ""),
    ("${EMPTY+other}", "other"),
    ("${UNSET+other}", ""),
    ("${UNSET:-${PORT}}", "8080"),
    ("$${SET}", "${SET}"),
    ("${SET:?must be set}", "value"),
    ("${SET:-${UNSET}}", "value"),  # an alternative not taken is not read (as in the shell)
    ("${UNSET:+${ALSO_UNSET}}", ""),
])
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert interpolate(text, VARIABLES) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${UNSET}", "${UNSET} is not set in the environment of this command"),
    ("${EMPTY:?give it a value}", "${EMPTY}: give it a value"),
    ("${UNSET?}", "${UNSET}: is not set"),
    ("${SET", "the ${ at character 1 is not closed by }"),
    ("${1X}", "expected a variable name after ${ at character 1"),
    ("${SET:-never closed", "unclosed ${"),
    ("${EMPTY:?}", "${EMPTY}: is empty"),
    ("x" + "${A:-" * 30 + "}" * 30, "nested more than 20 deep"),
    ("${SET}" * 300_000, "would pass 1,048,576 characters: refused"),
])
def test_interpolation_errors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=None) as raised:
        interpolate(text, VARIABLES)
    assert message in str(raised.value)
    assert len(str(raised.value)) < 200


def test_an_error_never_shows_the_value_around_the_reference() -> None:
    """An env value is often a secret: the message names the reference and where it is, never the text."""
    for secret in ("Xy7${k9Q", "tok${en", "p4ss${1word}"):
        with pytest.raises(InterpolationError) as raised:
            interpolate(secret, {})
        shown = str(raised.value)
        assert not any(part in shown for part in ("Xy7", "k9Q", "tok", "en ", "p4ss")), shown


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:$((8000 + ORCH_REPLICA))", "127.0.0.1:8002"),
    ("$((BASE + ORCH_REPLICA * 10))", "9020"),
    ("worker-$(ORCH_REPLICA)", "worker-2"),
    ("$((7 / -2)) $((7 % -2)) $((-(3 + 4) * 2))", "-3 1 -14"),  # the shell's rounding toward zero
    ("$(UNSET) $((UNSET + 1)) $((NAME + 1)) $((1 +)) $((2 ** 3)) $((1 / 0))",
     "$(UNSET) $((UNSET + 1)) $((NAME + 1)) $((1 +)) $((2 ** 3)) $((1 / 0))"),  # not ours: as written
    ("$$(ORCH_REPLICA)", "$(ORCH_REPLICA)"),
    ("$((" + "-" * 3001 + "1))", "-1"),  # a run of signs: no recursion
])
def test_per_replica_expansion(text: str, expected: str) -> None:
    assert expand(text, {"ORCH_REPLICA": "2", "BASE": "9000", "NAME": "web"}) == expected


@pytest.mark.parametrize("text", [
    "$((" + "*".join(["99999999"] * 1000) + "))",  # a product past any port or id
    "$((" + "1" * 5000 + "))",  # an operand past Python's int-to-text limit
    "$((HUGE + 1))",
])
def test_hostile_arithmetic_is_left_as_written_and_never_raises(text: str) -> None:
    assert expand(text, {"HUGE": "9" * 5000}) == text



def test_values_are_substituted_after_parsing_and_located(tmp_path: Path) -> None:
    manifest = tmp_path / "a.yaml"
    unquoted = process("a", ["echo", "${GREETING}", "${INJECT}"], replicas="${COUNT:-2}").replace(
        '"${COUNT:-2}"', "${COUNT:-2}")  # an unquoted ${...} reads as YAML reads a plain value: 3, not "3"
    manifest.write_text(documents(
        unquoted,
        process("b", ["echo", "${MISSING}"], env={"K": "${ALSO_MISSING:?set ALSO_MISSING to the api key}"})))
    variables = {"GREETING": "hello", "INJECT": "x]\nspec: {replicas: 9}", "COUNT": "3"}
    used: dict[str, str | None] = {}
    with pytest.raises(ManifestError) as raised:
        load_specs([str(manifest)], variables=variables, used=used)
    messages = sorted(str(p) for p in raised.value.problems)
    assert len(messages) == 2, messages
    assert "spec.command[1]: ${MISSING} is not set" in messages[0] and f"{manifest}:" in messages[0]
    assert "spec.env.K: ${ALSO_MISSING}: set ALSO_MISSING to the api key" in messages[1]
    manifest.write_text(unquoted)
    used.clear()
    (spec,) = load_specs([str(manifest)], variables=variables, used=used)
    # A value adds text to one string, never structure.
    assert spec.command == ("echo", "hello", "x]\nspec: {replicas: 9}") and spec.replicas == 3
    assert used == {"GREETING": "hello", "INJECT": variables["INJECT"], "COUNT": "3"}


def _free_ports(count: int) -> int:
    """A base port with `count` free ports from it (bound and released here; loopback)."""
    for _ in range(50):
        base = random.randrange(20000, 40000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_replicas_of_one_spec_serve_distinct_ports_from_the_applying_shells_base(orch: Orchestrator) -> None:
    base = _free_ports(3)
    manifest = orch.write("m/web.yaml", process(
        "web", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "$((PORT_BASE + ORCH_REPLICA))"],
        replicas=3, env={"PORT_BASE": "${PORT_BASE}", "WORKER": "web-$(ORCH_REPLICA)"},
        probes={"readiness": {"tcp": {"port": "$((PORT_BASE + ORCH_REPLICA))"}, "periodSeconds": 0.2}}))
    shell = dict(os.environ, PORT_BASE=str(base))
    applied = subprocess.run(orch.argv("apply", "-f", str(manifest)), env=shell, capture_output=True, text=True,
                             timeout=30, cwd=REPO, check=False)
    assert applied.returncode == 0, applied.stderr
    pids = orch.wait_running("web")["web"]
    for index in range(3):
        wait_for(lambda port=base + index: _answers(port), timeout=10, what=f"replica {index} on {base + index}")
    # Each replica's check goes to its own port (and passes only as that replica's own listening socket).
    wait_for(lambda: orch.objects()["web"]["replicas"]["ready"] == 3, timeout=15, what="three ready replicas")
    workers = sorted(psutil.Process(pid).environ()["WORKER"] for pid in pids)
    assert workers == ["web-0", "web-1", "web-2"]

    # Applied again from a shell without PORT_BASE: refused with the reason, and nothing that runs is touched.
    again = orch("apply", "-f", str(manifest))
    assert again.returncode == 1 and "${PORT_BASE} is not set" in again.stderr, again.stderr
    assert orch.running("web") == {"web": pids}


def test_a_watch_rereads_with_the_values_its_apply_used(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a", ["sleep", "${NAP}"]))
    shell = dict(os.environ, NAP="61")
    for first in (["diff"], ["apply"]):  # the daemon's cache knows the document before the watch starts
        subprocess.run(orch.argv(*first, "-f", str(manifest.parent)), env=shell, capture_output=True, timeout=30,
                       cwd=REPO, check=False)
    applied = subprocess.run(orch.argv("apply", "--watch", "-f", str(manifest.parent)), env=shell,
                             capture_output=True, text=True, timeout=30, cwd=REPO, check=False)
    assert applied.returncode == 0, applied.stderr
    before = orch.wait_running("a")["a"]
    assert psutil.Process(before[0]).cmdline() == ["sleep", "61"]
    manifest.write_text(process("a", ["sleep", "${NAP}"], labels={"edited": "yes"}, env={"X": "${NAP}"}))
    after = orch.wait_running("a", replacing={"a": before}, timeout=10)["a"]
    assert psutil.Process(after[0]).environ()["X"] == "61"
    assert not orch.events("Invalid")
    # Kept for the watch (and for the next daemon): the values it used, not the applying shell's environment.
    with sqlite3.connect(f"file:{orch.state / 'state.db'}?mode=ro", uri=True) as db:
        [(kept,)] = db.execute("SELECT path FROM watches").fetchall()
    assert json.loads(kept)["variables"] == {"NAP": "61"}


def test_one_unset_name_hides_no_other_problem_and_a_tag_is_kept(tmp_path: Path) -> None:
    manifest = tmp_path / "a.yaml"
    head = "apiVersion: orchestrator/v1\nkind: Process\nmetadata:\n  name: a\n  labels:\n    v: !!str ${V}\nspec:\n"
    manifest.write_text(head + "  command: ['${CMD}']\n  replicas: -1\n")
    with pytest.raises(ManifestError) as raised:
        load_specs([str(manifest)], variables={"V": "1.10"})
    messages = [str(p) for p in raised.value.problems]
    assert len(messages) == 2, messages  # the unset name, and replicas: nothing about the label or the command
    assert any("${CMD} is not set" in m for m in messages) and any("spec.replicas" in m for m in messages)
    manifest.write_text(head + "  command: [sleep, '1']\n")
    (spec,) = load_specs([str(manifest)], variables={"V": "1.10"})
    assert dict(spec.labels) == {"v": "1.10"}  # an explicit !!str stays a string: not the number 1.1


def test_an_env_file_of_garbage_is_refused_fast_and_briefly(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("".join(f"K{i}=${{\n" for i in range(20_000)))
    manifest = tmp_path / "a.yaml"
    manifest.write_text(process("a", envFrom=[{"file": "bad.env"}]))
    began = time.monotonic()
    with pytest.raises(ManifestError) as raised:
        load_specs([str(manifest)])
    assert time.monotonic() - began < 10  # was quadratic: minutes
    assert 1 < len(raised.value.problems) <= 21
    assert "more problems in this env file are not listed" in str(raised.value.problems[-1])
