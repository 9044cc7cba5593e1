"""The environment every replica, hook and exec check starts from, whoever started the daemon.

A child does not inherit the daemon's environment: the daemon is often started by the first `apply` of
whichever shell ran it (a virtual environment's PATH, a developer's exports), and what a replica sees must
not depend on that. As systemd does for services, a child starts from a fixed base:

- PATH  /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
- HOME, USER, LOGNAME, SHELL  of the user it runs as (the manifest's `user`, else the daemon's)
- LANG  C.UTF-8

then the daemon's variables named by `--pass-env` (or $ORCHESTRATOR_PASS_ENV, comma-separated; shell
patterns such as `LC_*` allowed), then the manifest's `env` and env files, then ORCH_NAME, ORCH_NAMESPACE
and ORCH_REPLICA. The service manager's own variables (NOTIFY_SOCKET, LISTEN_*) and the daemon's state-dir
mark are never passed on.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from ..core.model import DEFAULT_PATH

PASS_ENV_VARIABLE = "ORCHESTRATOR_PASS_ENV"
# Addressed to the daemon itself (its service manager's socket and fds, its own mark): never a child's.
NEVER_PASSED = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "ORCH_STATE_DIR", "ORCH_INSTANCE",
                "ORCH_NAME", "ORCH_NAMESPACE", "ORCH_REPLICA")


def pass_patterns(environ: Mapping[str, str], named: Iterable[str] = ()) -> list[str]:
    """The variables to pass on: those named on the command line, then those of $ORCHESTRATOR_PASS_ENV."""
    patterns = [name.strip() for name in named if name.strip()]
    patterns += [name.strip() for name in environ.get(PASS_ENV_VARIABLE, "").split(",") if name.strip()]
    return patterns


def base_environment(environ: Mapping[str, str], patterns: Iterable[str] = ()) -> dict[str, str]:
    """The fixed base (module docstring) with the variables of `environ` that match `patterns`."""
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
    env.update(user_variables(os.geteuid()))
    wanted = list(patterns)
    if wanted:
        for name, value in environ.items():
            if name not in NEVER_PASSED and any(fnmatchcase(name, pattern) for pattern in wanted):
                env[name] = value
    return env


def user_variables(uid: int) -> dict[str, str]:
    """HOME, USER, LOGNAME and SHELL of the user `uid` (what a login would give), or none if it has no entry."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return {}
    return {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name,
            "SHELL": entry.pw_shell or "/bin/sh"}


__all__ = ["DEFAULT_PATH", "PASS_ENV_VARIABLE", "base_environment", "pass_patterns", "user_variables"]
