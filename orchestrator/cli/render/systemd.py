"""The systemd unit `orchestrator startup` writes."""

from __future__ import annotations

import hashlib


def unit_name(state_dir: str, default_state_dir: str) -> str:
    """`orchestrator.service` for the default state dir; another state dir gets a unit of its own, named by
    a hash of its path, so that installing one never replaces another's."""
    if state_dir == default_state_dir:
        return "orchestrator.service"
    return f"orchestrator-{hashlib.sha256(state_dir.encode()).hexdigest()[:10]}.service"


def _plain(text: str, what: str) -> str:
    """`text` as it may stand in a unit file at all: no control character (a newline would start a directive)."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError(f"{what} {text!r} holds a control character: it cannot be written into a systemd unit")
    return text


def _specifiers_escaped(text: str) -> str:
    return text.replace("%", "%%")


def _exec_word(text: str, what: str) -> str:
    """One word of an ExecStart= line, meaning exactly `text` to systemd: in double quotes with C escapes, and
    `%` and `$` doubled (systemd expands specifiers and environment variables even inside quotes)."""
    quoted = '"' + _plain(text, what).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _specifiers_escaped(quoted).replace("$", "$$")


def systemd_unit(python: str, state_dir: str, user_unit: bool) -> str:
    """A unit that runs the daemon at boot with this state dir, stopping its processes gracefully on stop.
    Raises ValueError for a path no unit can hold."""
    command = " ".join([_exec_word(python, "the interpreter's path"), "-m", "orchestrator", "--state-dir",
                        _exec_word(state_dir, "the state dir"), "daemon"])
    return (
        "[Unit]\n"
        f"Description=orchestrator daemon for {_specifiers_escaped(_plain(state_dir, 'the state dir'))}\n"
        "After=network.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={command}\n"
        "Restart=on-failure\n"
        "# Signals go to the daemon only: on stop it stops every process in reverse dependency order itself,\n"
        "# and if it crashes its processes keep running for the restarted daemon to adopt (with mixed or\n"
        "# control-group, systemd would SIGKILL them all when the daemon dies).\n"
        "KillMode=process\n"
        "TimeoutStopSec=300\n"
        "# A cgroup of its own to hand down: the kernel then enforces memory and cpu limits per replica.\n"
        "# The daemon runs in its subgroup `supervisor`, replicas beside it (systemd 254 and later; an older\n"
        "# one ignores DelegateSubgroup, and under cgroup v2 may then fail to restart a crashed daemon).\n"
        "Delegate=yes\n"
        "DelegateSubgroup=supervisor\n"
        "\n"
        "[Install]\n"
        f"WantedBy={'default.target' if user_unit else 'multi-user.target'}\n"
    )
