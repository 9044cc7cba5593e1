"""The systemd unit `orchestrator startup` writes."""

from __future__ import annotations

import shlex


def systemd_unit(python: str, state_dir: str, user_unit: bool) -> str:
    """A unit that runs the daemon at boot with this state dir, stopping its processes gracefully on stop."""
    return (
        "[Unit]\n"
        f"Description=orchestrator daemon for {state_dir}\n"
        "After=network.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={shlex.quote(python)} -m orchestrator --state-dir {shlex.quote(state_dir)} daemon\n"
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
