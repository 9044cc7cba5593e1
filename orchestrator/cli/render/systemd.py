"""The systemd unit `orchestrator startup` writes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


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


SUBGROUP_SINCE = 254  # the first systemd that knows DelegateSubgroup=


def systemd_unit(python: str, state_dir: str, user_unit: bool, systemd_version: int | None = None,
                 daemon_options: Sequence[str] = ()) -> str:
    """A unit that runs the daemon at boot with this state dir, stopping its processes gracefully on stop.

    `systemd_version`: the systemd it is for (None: not known, so one that works on every systemd since 240).
    From 254 on the daemon gets a delegated cgroup with its own subgroup, and the kernel enforces replica
    limits; before, a daemon in a delegated cgroup could not be restarted after a crash (systemd cannot put
    a process into a cgroup that hands controllers down), so the daemon runs with `--limits watchdog`.
    `daemon_options`: more words for `orchestrator daemon` (fleet mode's), each quoted for ExecStart=.
    Raises ValueError for a path no unit can hold."""
    delegated = systemd_version is not None and systemd_version >= SUBGROUP_SINCE
    words = [_exec_word(python, "the interpreter's path"), "-m", "orchestrator", "--state-dir",
             _exec_word(state_dir, "the state dir"), "daemon"]
    if not delegated:
        words += ["--limits", "watchdog"]
    words += [_exec_word(word, "a daemon option") for word in daemon_options]
    if delegated:
        cgroup = (
            "# A cgroup of its own to hand down: the kernel then enforces memory and cpu limits per replica.\n"
            "# The daemon runs in its subgroup `supervisor`, replicas beside it.\n"
            "Delegate=yes\n"
            "DelegateSubgroup=supervisor\n")
    else:
        cgroup = (
            f"# For systemd before {SUBGROUP_SINCE} (or one not known): no delegated cgroup, which such a systemd\n"
            "# could not restart a crashed daemon in; the watchdog enforces memory and cpu limits, and the\n"
            "# daemon, as child subreaper, still ends each replica's whole tree.\n")
    return (
        "[Unit]\n"
        f"Description=orchestrator daemon for {_specifiers_escaped(_plain(state_dir, 'the state dir'))}\n"
        "After=network.target\n"
        "\n"
        "[Service]\n"
        "# Ready once its control socket answers: units ordered after it find the API up.\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"ExecStart={' '.join(words)}\n"
        "Restart=on-failure\n"
        "# Signals go to the daemon only: on stop it stops every process in reverse dependency order itself,\n"
        "# and if it crashes its processes keep running for the restarted daemon to adopt (with mixed or\n"
        "# control-group, systemd would SIGKILL them all when the daemon dies).\n"
        "KillMode=process\n"
        "TimeoutStopSec=300\n"
        f"{cgroup}"
        "\n"
        "[Install]\n"
        f"WantedBy={'default.target' if user_unit else 'multi-user.target'}\n"
    )


def installed_systemd_version() -> int | None:
    """The version of this host's systemd (`systemctl --version`), or None when there is none."""
    import subprocess

    try:
        first = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10,
                               check=False).stdout.split("\n", 1)[0]
    except (OSError, subprocess.SubprocessError):
        return None
    words = first.split()
    return int(words[1]) if len(words) > 1 and words[0] == "systemd" and words[1].isdigit() else None
