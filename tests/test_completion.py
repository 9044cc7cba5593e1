"""Shell completion, exercised in the real shells.

bash: the generated script is sourced in a non-interactive `bash --norc`, and its completion function (the
one `complete -p orchestrator` names) is called with COMP_WORDS, COMP_CWORD, COMP_LINE and COMP_POINT set as
readline sets them; COMPREPLY is what TAB would offer. zsh: the script loads under compinit, and an
interactive `zsh -f` on a pseudo-terminal is sent TAB and read back until the candidates show (or a deadline).
fish: `complete -C LINE` asks fish's own completion engine. A shell that is not installed is skipped, saying
so (.ci/run installs zsh and fish where it can).

Object names come from a real daemon; without one, and with a daemon that never answers, completion offers
nothing, prints nothing and stays fast.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from orchestrator.cli.completion import object_names
from orchestrator.cli.main import build_parser
from orchestrator.host.sockets import socket_path

CLI = [sys.executable, "-m", "orchestrator"]
BIN = Path(sys.executable).parent  # where this environment's `orchestrator` script is, which TAB runs
SHELL_TIMEOUT = 30.0

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None,
                               reason="zsh is not installed (`apt-get install zsh`; .ci/run does it as root)")
needs_fish = pytest.mark.skipif(shutil.which("fish") is None,
                                reason="fish is not installed (`apt-get install fish`; .ci/run does it as root)")
needs_entry_point = pytest.mark.skipif(not (BIN / "orchestrator").exists(),
                                       reason=f"no `orchestrator` script in {BIN} for the shells to run")

MANIFEST = textwrap.dedent("""\
    apiVersion: orchestrator/v1
    kind: Process
    metadata: {name: web}
    spec: {command: [sleep, "60"], shutdown: {timeoutSeconds: 0.5}}
    ---
    apiVersion: orchestrator/v1
    kind: Process
    metadata: {name: web, namespace: shop}
    spec: {command: [sleep, "60"], shutdown: {timeoutSeconds: 0.5}}
    ---
    apiVersion: orchestrator/v1
    kind: Process
    metadata: {name: db, namespace: shop}
    spec: {command: [sleep, "60"], shutdown: {timeoutSeconds: 0.5}}
    """)
NAMES = {"db", "default/web", "shop/web"}  # `web` is in two namespaces, so it needs its namespace

# Calls the completion function of the sourced script ($1) for the command line $2, cursor at its end.
BASH_DRIVER = r"""
source "$1" || exit 3
spec=$(complete -p orchestrator) || exit 4
printf 'SPEC %s\n' "$spec"
function=${spec#*-F }
function=${function%% *}
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
"$function" orchestrator "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf 'REPLY %s\n' "${COMPREPLY[@]}"
"""


def public_commands() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest for choice in commands._get_subactions()}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The script of each shell, as `orchestrator completion SHELL` prints it."""
    folder = tmp_path_factory.mktemp("completion")
    written = {}
    for shell in ("bash", "zsh", "fish"):
        result = subprocess.run([*CLI, "completion", shell], capture_output=True, text=True, timeout=SHELL_TIMEOUT,
                                cwd=REPO, check=False)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        written[shell] = folder / ("_orchestrator" if shell == "zsh" else f"orchestrator.{shell}")
        written[shell].write_text(result.stdout)
    return written


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with two manifests and a subdirectory, to complete file names in."""
    work = tmp_path / "work"
    (work / "manifests").mkdir(parents=True)
    (work / "app.yaml").write_text(MANIFEST)
    (work / "db.yaml").write_text(MANIFEST)
    return work


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    """The shells' environment: this `orchestrator` first on PATH, a state dir of the test's own (no daemon
    unless a test starts one), and a home of its own so that no shell writes to the user's."""
    home = tmp_path / "home"
    home.mkdir()
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                ORCHESTRATOR_HOME=str(tmp_path / "state"), HOME=str(home), ZDOTDIR=str(home),
                XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
                XDG_CACHE_HOME=str(home / ".cache"), TERM="xterm")


@pytest.fixture
def daemon(tmp_path: Path, shell_env: dict[str, str], workdir: Path) -> Iterator[None]:
    """A daemon for the shells' state dir, running the three objects of MANIFEST; shut down at the end."""
    env = dict(shell_env)
    applied = subprocess.run([*CLI, "apply", "-f", str(workdir / "app.yaml")], capture_output=True, text=True,
                             env=env, timeout=60, check=False)
    try:
        assert applied.returncode == 0, applied.stderr
        yield
    finally:
        stopped = subprocess.run([*CLI, "shutdown"], capture_output=True, text=True, env=env, timeout=150,
                                 check=False)
        if applied.returncode == 0:  # (else apply's failure is the one to report)
            assert stopped.returncode == 0, stopped.stderr


def bash_complete(script: Path, line: str, cwd: Path, env: dict[str, str]) -> list[str]:
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "driver", str(script), line],
                            capture_output=True, text=True, cwd=cwd, env=env, timeout=SHELL_TIMEOUT, check=False)
    assert result.returncode == 0 and result.stderr == "", (line, result.returncode, result.stderr)
    spec = [row for row in result.stdout.splitlines() if row.startswith("SPEC ")]
    assert spec and spec[0].endswith(" orchestrator") and " -F " in spec[0], result.stdout
    return [row[len("REPLY "):] for row in result.stdout.splitlines() if row.startswith("REPLY ") and row[6:]]


def fish_complete(script: Path, line: str, cwd: Path, env: dict[str, str]) -> list[str]:
    result = subprocess.run(["fish", "-c", f"source {script}; complete -C {_fish_quote(line)}"],
                            capture_output=True, text=True, cwd=cwd, env=env, timeout=SHELL_TIMEOUT, check=False)
    assert result.returncode == 0 and result.stderr == "", (line, result.returncode, result.stderr)
    return [row.split("\t", 1)[0] for row in result.stdout.splitlines() if row]


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- the command ------------------------------------------------------------------------------------------


def test_help_does_not_import_shtab_and_completion_lists_itself() -> None:
    probe = ("import sys\nfrom orchestrator.cli.main import main\ntry:\n    main(['--help'])\n"
             "except SystemExit:\n    pass\nprint('shtab imported:', 'shtab' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=SHELL_TIMEOUT,
                            cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    assert "shtab imported: False" in result.stdout
    assert "completion" in result.stdout and "--names" not in result.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run([*CLI, "completion", "tcsh"], capture_output=True, text=True, timeout=SHELL_TIMEOUT,
                            cwd=REPO, check=False)
    assert result.returncode == 2 and "bash" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("objects, expected", [
    pytest.param([], [], id="no-objects"),
    pytest.param([{"namespace": "default", "name": "web"}], ["web"], id="one-name-is-bare"),
    pytest.param([{"namespace": "default", "name": "web"}, {"namespace": "shop", "name": "web"},
                  {"namespace": "shop", "name": "db"}], ["db", "default/web", "shop/web"],
                 id="a-name-in-two-namespaces-is-qualified"),
    pytest.param([{"namespace": "shop", "name": "db"}, {"namespace": "shop", "name": "db"}], ["db"],
                 id="duplicates-once"),
    pytest.param([{"namespace": "default"}, {"name": ""}, {"name": "ok"}], ["ok"], id="nameless-skipped"),
])
def test_object_names(objects: list[dict[str, str]], expected: list[str]) -> None:
    assert object_names(objects) == expected


# -- bash -------------------------------------------------------------------------------------------------


@needs_bash
@pytest.mark.parametrize("line, expected", [
    pytest.param("orchestrator ap", ["apply"], id="command-prefix"),
    pytest.param("orchestrator get -o ", ["text", "wide", "json", "yaml"], id="output-choices"),
    pytest.param("orchestrator validate --output j", ["json"], id="long-option-choice"),
    pytest.param("orchestrator wait web --for ", ["ready", "completed", "deleted"], id="choices-after-a-name"),
    pytest.param("orchestrator completion ", ["bash", "zsh", "fish"], id="shells"),
    pytest.param("orchestrator get --o", ["--output"], id="option-prefix"),
    pytest.param("orchestrator apply -f ", ["app.yaml", "db.yaml", "manifests"], id="files-for-f"),
    pytest.param("orchestrator apply --dry-run --filename a", ["app.yaml"], id="files-for-filename"),
    pytest.param("orchestrator --state-dir ", ["manifests"], id="directories-for-state-dir"),
    pytest.param("orchestrator logs -f ", [], id="logs-f-is-follow-not-files"),
    pytest.param("orchestrator get ", [], id="no-names-without-a-daemon"),
    pytest.param("orchestrator rollout ", ["status", "history", "undo", "retry", "pause", "resume", "restart"],
                 id="rollout-verbs"),
    pytest.param("orchestrator rollout status web -o ", ["text", "json"], id="choices-of-a-nested-command"),
])
def test_bash_completes(scripts: dict[str, Path], workdir: Path, shell_env: dict[str, str], line: str,
                        expected: list[str]) -> None:
    assert sorted(bash_complete(scripts["bash"], line, workdir, shell_env)) == sorted(expected)


@needs_bash
def test_bash_offers_every_command_of_the_parser(scripts: dict[str, Path], workdir: Path,
                                                 shell_env: dict[str, str]) -> None:
    offered = bash_complete(scripts["bash"], "orchestrator ", workdir, shell_env)
    assert set(offered) == public_commands() and "completion" in offered


@needs_bash
@needs_entry_point
def test_bash_completes_object_names_of_the_running_daemon(scripts: dict[str, Path], workdir: Path,
                                                           shell_env: dict[str, str], daemon: None) -> None:
    assert set(bash_complete(scripts["bash"], "orchestrator describe ", workdir, shell_env)) == NAMES
    assert bash_complete(scripts["bash"], "orchestrator logs sh", workdir, shell_env) == ["shop/web"]
    assert set(bash_complete(scripts["bash"], "orchestrator delete db ", workdir, shell_env)) == NAMES
    assert set(bash_complete(scripts["bash"], "orchestrator rollout undo ", workdir, shell_env)) == NAMES
    assert bash_complete(scripts["bash"], "orchestrator get -o ", workdir, shell_env) == [
        "text", "wide", "json", "yaml"]


# -- without a daemon: nothing, silently and fast ----------------------------------------------------------


def names(state: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([*CLI, "--state-dir", str(state), "completion", "bash", "--names"], capture_output=True,
                            text=True, timeout=SHELL_TIMEOUT, cwd=REPO, check=False)
    return result, time.monotonic() - started


def test_names_without_a_daemon_print_nothing(tmp_path: Path) -> None:
    result, _ = names(tmp_path / "never-made")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_names_from_a_stale_socket_print_nothing(tmp_path: Path) -> None:
    state = Path(tempfile.mkdtemp(dir="/tmp", prefix="orch-"))  # short: a socket path has 108 bytes at most
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(str(socket_path(state)))  # bound, never listening: connecting is refused
        result, _ = names(state)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    finally:
        shutil.rmtree(state)


def test_names_from_a_daemon_that_never_answers_give_up_fast(tmp_path: Path) -> None:
    state = Path(tempfile.mkdtemp(dir="/tmp", prefix="orch-"))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.bind(str(socket_path(state)))
            silent.listen(4)  # connections queue; none is ever answered
            result, seconds = names(state)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert seconds < 10, f"took {seconds:.1f} s"
    finally:
        shutil.rmtree(state)


# -- zsh --------------------------------------------------------------------------------------------------


@needs_zsh
@needs_entry_point
@pytest.mark.parametrize("load, completer", [
    pytest.param("source <(orchestrator completion zsh)", "_shtab_orchestrator", id="sourced"),
    pytest.param('eval "$(orchestrator completion zsh)"', "_shtab_orchestrator", id="eval"),
    pytest.param("", "_orchestrator", id="fpath"),  # compinit finds _orchestrator there, to autoload at TAB
])
def test_zsh_script_loads_under_compinit(scripts: dict[str, Path], shell_env: dict[str, str], tmp_path: Path,
                                         load: str, completer: str) -> None:
    command = (f"fpath=({scripts['zsh'].parent} $fpath); autoload -U compinit; compinit -u -D; {load}; "
               "print -r -- \"COMPLETER $_comps[orchestrator]\"")
    result = subprocess.run(["zsh", "-f", "-c", command], capture_output=True, text=True, env=shell_env,
                            cwd=tmp_path, timeout=SHELL_TIMEOUT, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert f"COMPLETER {completer}\n" in result.stdout


class Terminal:
    """An interactive program on a pseudo-terminal: keys in, the screen's text out (escape codes removed)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, replica = pty.openpty()
        fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.process = subprocess.Popen(argv, stdin=replica, stdout=replica, stderr=replica, env=env, cwd=cwd,
                                        start_new_session=True)
        os.close(replica)
        self.text = ""

    def send(self, keys: str) -> None:
        self.text = ""
        os.write(self.master, keys.encode())

    def expect(self, *words: str, timeout: float = 15.0) -> str:
        """Read until every word has shown since the last `send`; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while not all(word in self.text for word in words):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{words} did not show within {timeout} s; the screen said {self.text!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.1))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the program ended
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    pytest.fail(f"exited with {self.process.returncode} before {words} showed: {self.text!r}")
                self.text += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f]", "",
                                    chunk.decode(errors="replace"))
        return self.text

    def close(self) -> None:
        os.close(self.master)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def zsh_tab(scripts: dict[str, Path], line: str, cwd: Path, env: dict[str, str], *shown: str,
            load: str = "") -> str:
    """Type `line` and TAB into a fresh interactive zsh that completes with the script (autoloaded from fpath,
    unless `load` loads it); the screen after."""
    terminal = Terminal(["zsh", "-f", "-i"], env, cwd)
    try:
        terminal.send(f"fpath=({scripts['zsh'].parent} $fpath); autoload -U compinit; compinit -u -D; {load}; "
                      "PS1='READY''> '\n")
        terminal.expect("READY> ")
        terminal.send(line + "\t")
        return terminal.expect(*shown)
    finally:
        terminal.close()


@needs_zsh
@pytest.mark.parametrize("line, shown, not_shown", [
    pytest.param("orchestrator ap", ["apply"], [], id="command-prefix"),
    pytest.param("orchestrator get -o ", ["text", "wide", "json", "yaml"], ["app.yaml"], id="output-choices"),
    pytest.param("orchestrator apply -f ", ["app.yaml", "db.yaml", "manifests/"], [], id="files-for-f"),
    pytest.param("orchestrator completion ", ["bash", "zsh", "fish"], ["app.yaml"], id="shells"),
])
def test_zsh_completes_on_tab(scripts: dict[str, Path], workdir: Path, shell_env: dict[str, str], line: str,
                              shown: list[str], not_shown: list[str]) -> None:
    screen = zsh_tab(scripts, line, workdir, shell_env, *shown)
    assert not [word for word in not_shown if word in screen], screen


@needs_zsh
@needs_entry_point
def test_zsh_completes_with_the_sourced_script(scripts: dict[str, Path], workdir: Path,
                                               shell_env: dict[str, str]) -> None:
    screen = zsh_tab(scripts, "orchestrator get -o ", workdir, shell_env, "text", "wide", "json", "yaml",
                     load="source <(orchestrator completion zsh)")
    assert "can only be called" not in screen, screen


@needs_zsh
@needs_entry_point
def test_zsh_completes_object_names_of_the_running_daemon(scripts: dict[str, Path], workdir: Path,
                                                          shell_env: dict[str, str], daemon: None) -> None:
    zsh_tab(scripts, "orchestrator describe ", workdir, shell_env, *NAMES)
    zsh_tab(scripts, "orchestrator scale sh", workdir, shell_env, "orchestrator scale shop/web")


# -- fish -------------------------------------------------------------------------------------------------


@needs_fish
@needs_entry_point
def test_fish_script_loads_and_completes(shell_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(["fish", "-c", "orchestrator completion fish | source; complete -C 'orchestrator ap'"],
                            capture_output=True, text=True, env=shell_env, cwd=tmp_path, timeout=SHELL_TIMEOUT,
                            check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert [row.split("\t")[0] for row in result.stdout.splitlines()] == ["apply"]


@needs_fish
@pytest.mark.parametrize("line, expected", [
    pytest.param("orchestrator ap", ["apply"], id="command-prefix"),
    pytest.param("orchestrator get -o ", ["text", "wide", "json", "yaml"], id="output-choices"),
    pytest.param("orchestrator wait web --for ", ["ready", "completed", "deleted"], id="choices-after-a-name"),
    pytest.param("orchestrator apply -f ", ["app.yaml", "db.yaml", "manifests/"], id="files-for-f"),
    pytest.param("orchestrator completion ", ["bash", "zsh", "fish"], id="shells"),
    pytest.param("orchestrator get ", [], id="no-names-without-a-daemon"),
    pytest.param("orchestrator rollout ", ["status", "history", "undo", "retry", "pause", "resume", "restart"],
                 id="rollout-verbs"),
    pytest.param("orchestrator rollout status web -o ", ["text", "json"], id="choices-of-a-nested-command"),
])
def test_fish_completes(scripts: dict[str, Path], workdir: Path, shell_env: dict[str, str], line: str,
                        expected: list[str]) -> None:
    assert sorted(fish_complete(scripts["fish"], line, workdir, shell_env)) == sorted(expected)


@needs_fish
def test_fish_offers_every_command_of_the_parser(scripts: dict[str, Path], workdir: Path,
                                                 shell_env: dict[str, str]) -> None:
    assert set(fish_complete(scripts["fish"], "orchestrator ", workdir, shell_env)) == public_commands()


@needs_fish
@needs_entry_point
def test_fish_completes_object_names_of_the_running_daemon(scripts: dict[str, Path], workdir: Path,
                                                           shell_env: dict[str, str], daemon: None) -> None:
    assert set(fish_complete(scripts["fish"], "orchestrator logs ", workdir, shell_env)) == NAMES
