"""The `sync` views: the GitSync table of `sync list`, one sync in detail (`sync get`), the lines of the verbs,
and `sync diff`'s report.

Every function takes the daemon's status document of a sync (S: its keys are those of GET /gitsyncs/NAME) or
its answer to a verb. Secrets never reach these views: a sync's spec holds only the paths of its credential
files, and the status has not even those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...core.errors import Location, Problem
from .common import GAP, age_text, ago_text, as_mapping, cell_text, duration_text, human_age, table_text, truncated
from .describe import _fields
from .diffs import spec_diff, spec_diff_json

SHORT_SHA = 7  # as git's --abbrev-commit
HISTORY_SHOWN = 5
_MIN_MESSAGE_WIDTH = 10  # below this a truncated message says nothing; let the line wrap instead
_SHA1 = "@sha1:"


def short_revision(revision: Any) -> str:
    """`main@sha1:<40 hex>` as `main@3f2a1c9`; a sync that follows one commit, `<40>@sha1:<40>`, as `3f2a1c9`."""
    if not isinstance(revision, str) or not revision:
        return "-"
    ref, found, commit = revision.rpartition(_SHA1)
    if not found:
        return cell_text(revision[:SHORT_SHA] if _is_commit(revision) else revision)
    if _is_commit(ref):
        return cell_text(commit[:SHORT_SHA])
    return cell_text(f"{ref}@{commit[:SHORT_SHA]}")


def _is_commit(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text)


def ref_text(ref: Any, kind: bool = False) -> str:
    """What a sync follows: `main`, `v1.2.0`, or the commit's short sha; with `kind`, `branch main`..."""
    for name in ("branch", "tag", "commit"):
        value = as_mapping(ref).get(name)
        if isinstance(value, str):
            shown = value[:SHORT_SHA] if name == "commit" and not kind else value
            return cell_text(f"{name} {shown}" if kind else shown)
    return "-"


def problem_line(problem: Mapping[str, Any]) -> str:
    """A located problem (Problem.to_json()) as every command prints one: `file:line:column: field: message`."""
    location = Location(str(problem.get("file", "")), _int(problem.get("line")), _int(problem.get("column")))
    return cell_text(str(Problem(location, str(problem.get("path") or ""), str(problem.get("message", "")))))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def syncs_table(syncs: Sequence[Mapping[str, Any]], *, now: float, width: int | None = None) -> str:
    """`orchestrator sync list`: NAME REPO REF PATH SYNC HEALTH REVISION LAST-SYNC MESSAGE. `width` (the
    terminal's) truncates MESSAGE with `…`; `now` is wall seconds."""
    if not syncs:
        return "No gitsyncs."
    header = ["NAME", "REPO", "REF", "PATH", "SYNC", "HEALTH", "REVISION", "LAST-SYNC", "MESSAGE"]
    rows = [[
        cell_text(sync.get("name")),
        cell_text(sync.get("repo")),
        ref_text(sync.get("ref")),
        cell_text(sync.get("path")),
        cell_text(sync.get("sync")),
        cell_text(sync.get("health")),
        short_revision(sync.get("revision")),
        age_text(sync.get("last_sync_at"), now),
        cell_text(sync.get("message")),
    ] for sync in syncs]
    if width is not None:
        fixed = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header) - 1)]
        room = max(width - sum(fixed) - len(GAP) * len(fixed), _MIN_MESSAGE_WIDTH)
        for row in rows:
            row[-1] = truncated(row[-1], room)
    return table_text(header, rows)


def sync_text(sync: Mapping[str, Any], *, now: float) -> str:
    """`orchestrator sync get NAME`: what it follows, where it stands, why (conditions, each with its located
    problems), its windows, its last HISTORY_SHOWN passes and the objects it owns."""
    suspended = "no"
    if sync.get("suspended"):
        suspended = "yes" + (f": {cell_text(sync.get('suspend_reason'))}" if sync.get("suspend_reason") else "")
    pairs: list[tuple[str, str | list[str]]] = [
        ("Name", cell_text(sync.get("name"))),
        ("Repo", cell_text(sync.get("repo"))),
        ("Ref", ref_text(sync.get("ref"), kind=True)),
        ("Path", cell_text(sync.get("path"))),
        *([("Target", "Fleet (etcd)"), ("Leader", cell_text(sync.get("leader")))]
          if sync.get("target") == "Fleet" else []),
        ("Interval", duration_text(sync.get("interval_seconds"))),
        ("Prune", _yes(sync.get("prune"))),
        ("Self-heal", _yes(sync.get("self_heal"))),
        ("Suspended", suspended),
        ("Sync", cell_text(sync.get("sync"))),
        ("Health", cell_text(sync.get("health"))),
        ("Revision", cell_text(sync.get("revision"))),
        ("Last applied", cell_text(sync.get("last_applied_revision"))),
        ("Last attempted", cell_text(sync.get("last_attempted_revision"))),
        ("Last fetch", ago_text(sync.get("last_fetch_at"), now)),
        ("Last sync", ago_text(sync.get("last_sync_at"), now)),
        ("Next sync", _due_text(sync.get("next_sync_at"), now)),
        ("Message", cell_text(sync.get("message"))),
        ("Windows", [window_text(as_mapping(w)) for w in sync.get("windows") or () if isinstance(w, Mapping)]),
    ]
    lines = _fields(pairs)
    lines += _conditions_lines(sync.get("conditions") or (), now)
    lines += _history_lines(sync.get("history") or (), now)
    objects = [cell_text(key) for key in sync.get("objects") or ()]
    lines += ["Objects:", *(f"  {key}" for key in objects)] if objects else ["Objects:  <none>"]
    return "\n".join(lines)


def _yes(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "-"


def _due_text(at: Any, now: float) -> str:
    if not isinstance(at, (int, float)) or at == float("inf"):
        return "-"
    return f"in {human_age(at - now)}" if at > now else "due"


def window_text(window: Mapping[str, Any]) -> str:
    """`deny 0 22 * * * for 1h (Europe/Berlin), manual sync allowed`."""
    text = (f"{cell_text(window.get('kind'))} {cell_text(window.get('schedule'))} for "
            f"{duration_text(window.get('duration_seconds'))} ({cell_text(window.get('time_zone') or 'UTC')})")
    return text + (", manual sync allowed" if window.get("manual_sync") else "")


def _conditions_lines(conditions: Sequence[Any], now: float) -> list[str]:
    found = [as_mapping(c) for c in conditions if isinstance(c, Mapping)]
    if not found:
        return ["Conditions:  <none>"]
    rows = [[cell_text(c.get("type")), cell_text(c.get("reason")), ago_text(c.get("since"), now),
             cell_text(c.get("message"))] for c in found]
    table = table_text(["TYPE", "REASON", "SINCE", "MESSAGE"], rows).splitlines()
    lines = ["Conditions:", f"  {table[0]}"]
    for line, condition in zip(table[1:], found):
        lines.append(f"  {line}")
        lines += [f"    {problem_line(p)}" for p in condition.get("problems") or () if isinstance(p, Mapping)]
    return lines


def _history_lines(history: Sequence[Any], now: float) -> list[str]:
    passes = [as_mapping(h) for h in history if isinstance(h, Mapping)][-HISTORY_SHOWN:]
    if not passes:
        return ["History:  <none>"]
    rows = [[short_revision(h.get("revision")), cell_text(h.get("result")), cell_text(h.get("orchestrator_revision")),
             ago_text(h.get("at"), now), cell_text(h.get("message"))] for h in passes]
    table = table_text(["REVISION", "RESULT", "DESIRED-REV", "AGE", "MESSAGE"], rows)
    return [f"History (last {HISTORY_SHOWN}):", *(f"  {line}" for line in table.splitlines())]


# -- the verbs' lines ---------------------------------------------------------------------------------------


def added_line(answer: Mapping[str, Any], dry_run: bool = False) -> str:
    """`gitsync/prod created` (configured, unchanged), as apply's result lines."""
    return f"gitsync/{cell_text(answer.get('name'))} {cell_text(answer.get('result'))}" + (
        " (dry run)" if dry_run else "")


def outcome_text(answer: Mapping[str, Any]) -> str:
    """`sync now`: `gitsync/prod applied (Synced, Healthy, main@3f2a1c9): applied rev 17`, then the outcome's
    located problems, one per line."""
    sync, outcome = as_mapping(answer.get("sync")), as_mapping(answer.get("outcome"))
    result = outcome.get("result")
    order = {"applied": ("last_applied_revision",), "failed": ("last_attempted_revision",),
             "refused": ("last_attempted_revision",)}.get(str(result), ())
    revision = next((sync[k] for k in (*order, "revision") if sync.get(k)), None)
    state = ", ".join(text for text in (cell_text(sync.get("sync")), cell_text(sync.get("health")),
                                        short_revision(revision)) if text != "-")
    line = f"gitsync/{cell_text(sync.get('name'))} {cell_text(result)}" + (f" ({state})" if state else "")
    if outcome.get("message"):
        line += f": {cell_text(outcome.get('message'))}"
    problems = [f"  {problem_line(p)}" for p in outcome.get("problems") or () if isinstance(p, Mapping)]
    return "\n".join([line, *problems])


def suspended_line(answer: Mapping[str, Any], suspend: bool) -> str:
    """`sync suspend` and `sync resume`: where the sync stands now. Resumed, it stays suspended while its own
    manifest says `suspend: true`."""
    sync = as_mapping(answer.get("sync"))
    name = cell_text(sync.get("name"))
    if suspend:
        reason = sync.get("suspend_reason")
        return f"gitsync/{name} suspended" + (f": {cell_text(reason)}" if reason else "")
    if sync.get("suspended"):
        return f"gitsync/{name} resumed, but its manifest says suspend: true: still suspended"
    return f"gitsync/{name} resumed"


def removed_text(answer: Mapping[str, Any]) -> str:
    """`sync remove`: each object pruned, then `gitsync/prod removed`."""
    pruned = [f"{cell_text(key)} pruned" for key in answer.get("pruned") or ()]
    return "\n".join([*pruned, f"gitsync/{cell_text(answer.get('name'))} removed"])


# -- sync diff ----------------------------------------------------------------------------------------------

Pair = tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]  # key, live document, the commit's


def sync_diff_text(changes: Sequence[Pair], not_pruned: Sequence[str], color: bool = False) -> str:
    """`sync diff`: spec_diff of each change (live `-`, the commit's `+`), then a line per owned object prune
    would remove were it on; "" when there is neither."""
    out = [text.rstrip("\n") for text in (spec_diff(key, old, new, color) for key, old, new in changes) if text]
    out += [f"{cell_text(key)}: not in the commit, would not be pruned (prune is off)" for key in not_pruned]
    return "\n".join(out)


def sync_diff_json(revision: Any, commit: Any, changes: Sequence[Pair], not_pruned: Sequence[str]) -> dict[str, Any]:
    """`sync diff -o json`: {"revision", "commit", "changes": as `diff -o json`'s, "not_pruned": [keys]}."""
    found = [d for d in (spec_diff_json(*change) for change in changes) if d is not None]
    return {"revision": revision, "commit": commit, "changes": found, "not_pruned": list(not_pruned)}
