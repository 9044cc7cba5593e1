"""The pure part of GitSync (planning/gitsync.py) and the webhook's signature check (daemon/hooks.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import random
from pathlib import Path

import pytest

from orchestrator.core.errors import UserError
from orchestrator.core.model import Autoscale, Kind, ProcessSpec
from orchestrator.daemon.hooks import read_secret, signature_matches
from orchestrator.planning import gitsync as plan

A, B = "a" * 40, "b" * 40


@pytest.mark.parametrize(("applied", "failed", "drifted", "force", "step"), [
    (None, None, False, False, plan.Step.SYNC),  # never applied
    ((A, "h"), None, False, False, plan.Step.NOTHING),  # the cheap no-op
    ((A, "h"), None, True, False, plan.Step.SYNC),  # drift with selfHeal: a pass sets it back
    ((B, "h"), (A, "h"), False, False, plan.Step.KEEP_FAILED),  # failed before: not tried again
    ((B, "h"), (A, "h"), False, True, plan.Step.SYNC),  # ... unless forced
    ((B, "h"), (A, "other"), False, False, plan.Step.SYNC),  # the sync's spec changed: worth a try
    ((A, "other"), None, False, False, plan.Step.SYNC),  # applied with another spec (another path)
])
def test_next_step(applied: tuple[str, str] | None, failed: tuple[str, str] | None, drifted: bool, force: bool,
                   step: plan.Step) -> None:
    assert plan.next_step(A, "h", applied, failed, drifted, force) is step


def test_polls_get_a_phase_of_at_most_ten_percent_and_retries_double_up_to_the_interval() -> None:
    rng = random.Random(7)
    delays = [plan.poll_delay(60, True, rng) for _ in range(1000)]
    assert 60 <= min(delays) and max(delays) <= 66 and max(delays) - min(delays) > 5
    assert plan.poll_delay(60, False, rng) == 60
    assert [plan.retry_delay(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def spec(name: str, **fields: object) -> ProcessSpec:
    return ProcessSpec(name=name, kind=Kind.PROCESS, command=("sleep", "60"), **fields)  # type: ignore[arg-type]


def test_drift_names_deleted_objects_and_changed_fields_never_values() -> None:
    web, worker = spec("web"), spec("worker", env=(("TOKEN", "hunter2"),))
    applied = {web.key: web, worker.key: worker}
    assert plan.drift(applied, dict(applied)) == []
    assert plan.drift(applied, {web.key: dataclasses.replace(web, stopped=True), worker.key: worker}) == []
    lines = plan.drift(applied, {web.key: dataclasses.replace(web, replicas=3),
                                 worker.key: dataclasses.replace(worker, env=(("TOKEN", "other"),))})
    assert lines == ["default/web: replicas 1 -> 3", "default/worker: env changed"]
    assert "hunter2" not in "".join(lines)
    assert plan.drift(applied, {worker.key: worker}) == ["default/web: deleted"]
    held = {web.key: dataclasses.replace(web, command=("sleep", "1")), worker.key: worker}
    assert plan.drift(applied, held, held=[web.key]) == []


def test_an_autoscaled_pool_size_is_not_drift() -> None:
    pool = spec("pool", replicas=2, autoscale=Autoscale(min=1, max=5, target_cpu_percent=50))
    grown = dataclasses.replace(pool, replicas=4)
    assert plan.drift({pool.key: pool}, {pool.key: grown}) == []
    retargeted = dataclasses.replace(grown, autoscale=Autoscale(min=1, max=9, target_cpu_percent=50))
    assert plan.drift({pool.key: pool}, {pool.key: retargeted}) == ["default/pool: autoscale changed"]


def document(key: str, state: str = "Running", ready: int = 1, desired: int = 1, kind: str = "Process") -> dict:
    return {"key": key, "state": state, "kind": kind, "replicas": {"ready": ready, "desired": desired}}


@pytest.mark.parametrize(("objects", "rolling", "suspended", "health"), [
    ([document("d/a"), document("d/b")], {}, False, plan.HEALTHY),
    ([document("d/a")], {}, False, plan.MISSING),
    ([document("d/a"), document("d/b", ready=0)], {}, False, plan.PROGRESSING),
    ([document("d/a"), document("d/b", state="BackOff", ready=0)], {}, False, plan.DEGRADED),
    ([document("d/a"), document("d/b")], {"d/b": "Progressing"}, False, plan.PROGRESSING),
    ([document("d/a"), document("d/b")], {"d/b": "RolledBack"}, False, plan.DEGRADED),
    ([document("d/a"), document("d/b", kind="Job", state="Running", ready=0)], {}, False, plan.PROGRESSING),
    ([document("d/a"), document("d/b", kind="Job", state="Succeeded", ready=0)], {}, False, plan.HEALTHY),
    ([document("d/a"), document("d/b")], {}, True, plan.SUSPENDED),
])
def test_health(objects: list[dict], rolling: dict[str, str], suspended: bool, health: str) -> None:
    assert plan.health(objects, ["d/a", "d/b"], rolling, suspended) == health


def test_the_prune_opt_out_label() -> None:
    assert plan.prunable(spec("a"))
    assert not plan.prunable(spec("a", labels=((plan.NO_PRUNE_LABEL, "false"),)))


def test_signatures_are_checked_in_both_spellings() -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature_matches(b"k", body, {"X-Hub-Signature-256": good})
    assert signature_matches(b"k", body, {"X-Signature": good.upper().replace("SHA256=", "sha256=")})
    assert not signature_matches(b"k", body + b" ", {"X-Hub-Signature-256": good})
    assert not signature_matches(b"other", body, {"X-Signature": good})
    assert not signature_matches(b"k", body, {"X-Hub-Signature": "sha1=" + "0" * 40})
    assert not signature_matches(b"k", body, {})


def test_a_webhook_secret_must_be_an_owner_only_regular_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert read_secret(str(secret)) == b"s3cret"
    secret.chmod(0o640)
    with pytest.raises(UserError, match="chmod 600"):
        read_secret(str(secret))
    secret.chmod(0o600)
    link = tmp_path / "link"
    os.symlink(secret, link)
    with pytest.raises(UserError):
        read_secret(str(link))
    with pytest.raises(UserError, match="not a regular file"):
        read_secret(str(tmp_path))
    with pytest.raises(UserError):
        read_secret(str(tmp_path / "missing"))
