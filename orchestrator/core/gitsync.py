"""Values of a GitSync: the frozen spec of one followed git repository, and its sync windows.

Built from a validated GitSync document (manifests/gitsyncs.py), compared to tell "changed" from "unchanged",
stored as its manifest document. Defaults and units are written once, in schemas/gitsync.v1.json; the defaults
below mirror them (tested). A spec holds paths to secrets, never a secret. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Location

GITSYNC_KIND = "GitSync"
REF_KINDS = ("branch", "tag", "commit")
ALLOW, DENY = "allow", "deny"  # the kinds of a SyncWindow
# Where a GitSync applies what it follows: the local engine, or (a daemon in fleet mode) the fleet's desired
# state in etcd, written by the one node that holds the sync's election (daemon/fleet.py).
LOCAL, FLEET = "Local", "Fleet"
TARGETS = (LOCAL, FLEET)
DEFAULT_USERNAME = "x-access-token"


@dataclass(frozen=True)
class SyncWindow:
    """A time when syncs are allowed or denied, as in Argo CD: it opens at each time its cron `schedule` (5
    fields, read in `time_zone`) names and stays active for `duration_seconds`. `manual_sync` lets a manual sync
    through while this window blocks."""

    kind: str  # ALLOW or DENY
    schedule: str
    duration_seconds: float
    time_zone: str = "UTC"
    manual_sync: bool = False


@dataclass(frozen=True)
class GitSyncSpec:
    """The desired state of one GitSync: which ref of which repository, which directory of it, how often, and
    with what safety. `ref` is the branch or tag name, or the commit lowercased; `path` is normalised
    (posixpath.normpath: no trailing slash, "." for the whole repository). `location` says where the document
    is and takes no part in comparisons."""

    name: str
    repo: str
    ref_kind: str  # one of REF_KINDS
    ref: str
    path: str = "."
    interval_seconds: float = 60.0
    timeout_seconds: float = 60.0
    retry_interval_seconds: float = 30.0
    prune: bool = False
    allow_empty: bool = False
    self_heal: bool = False
    self_heal_delay_seconds: float = 5.0
    suspend: bool = False
    windows: tuple[SyncWindow, ...] = ()
    token_file: str | None = None
    username: str = DEFAULT_USERNAME
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    insecure_skip_host_key_check: bool = False
    webhook_secret_file: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    target: str = LOCAL  # one of TARGETS
    location: Location | None = field(default=None, compare=False)

    @property
    def ref_text(self) -> str:
        """The ref as users name it: `main`, `v1.2`, or the 40-hex commit."""
        return self.ref
