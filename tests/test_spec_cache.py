"""manifests/cache.py and server-side apply: an unchanged document costs a hash, and nothing stale is used."""

# ruff: noqa: F811 - the fixtures `orch` and `in_tmp` are imported from the modules that define them

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from test_daemon import Orchestrator, documents, orch, process  # noqa: F401
from test_manifest import PROCESS, errors, in_tmp, write  # noqa: F401

from orchestrator.core.errors import ManifestError
from orchestrator.manifests import cache as cache_module
from orchestrator.manifests.cache import SpecCache
from orchestrator.manifests.loader import load_specs, split_documents


def test_split_documents_cuts_before_each_document_marker_only() -> None:
    text = "# head\n---\na: 1\n--- # second\nb: |\n  ---not a marker\n  text\n---\n...\n"
    assert split_documents(text) == [(1, "# head\n"), (2, "---\na: 1\n"),
                                     (4, "--- # second\nb: |\n  ---not a marker\n  text\n"), (8, "---\n...\n")]
    assert split_documents("%YAML 1.1\n---\na: 1\n---\nb: 2\n") == [(1, "%YAML 1.1\n---\na: 1\n---\nb: 2\n")]
    assert split_documents("a: 1\n") == [(1, "a: 1\n")]


def test_a_second_load_of_unchanged_documents_parses_nothing(in_tmp: Path) -> None:
    write(in_tmp / "m.yaml", documents(*(PROCESS.format(name=f"p{i}") for i in range(20))))
    cache = SpecCache()
    first = load_specs(["m.yaml"], cache=cache)
    assert (cache.hits, cache.misses) == (0, 20)
    again = load_specs(["m.yaml"], cache=cache)
    assert again == first and (cache.hits, cache.misses) == (20, 20)


def test_a_document_that_moved_is_reused_with_its_positions_moved(in_tmp: Path) -> None:
    body = documents(PROCESS.format(name="a"), PROCESS.format(name="b") + "  dependsOn: [{name: a}]\n")
    write(in_tmp / "m.yaml", body)
    cache = SpecCache()
    load_specs(["m.yaml"], cache=cache)
    write(in_tmp / "m.yaml", "# two lines\n# above\n" + body)
    moved = load_specs(["m.yaml"], cache=cache)
    assert cache.hits == 1  # a's part now holds the comments: parsed again; b's part only moved
    assert moved == load_specs(["m.yaml"])
    assert [s.location.line for s in moved if s.location] == [3, 10]
    assert moved[1].depends_on[0].location is not None and moved[1].depends_on[0].location.line == 16


def test_an_edited_env_file_means_a_fresh_read(in_tmp: Path) -> None:
    write(in_tmp / "app.env", "MODE=one\n")
    write(in_tmp / "m.yaml", PROCESS.format(name="a") + "  envFrom: [{file: app.env}]\n")
    cache = SpecCache()
    assert dict(load_specs(["m.yaml"], cache=cache)[0].env) == {"MODE": "one"}
    write(in_tmp / "app.env", "MODE=two\n")
    assert dict(load_specs(["m.yaml"], cache=cache)[0].env) == {"MODE": "two"}
    os.unlink(in_tmp / "app.env")
    with pytest.raises(ManifestError, match="env file 'app.env' does not exist"):
        load_specs(["m.yaml"], cache=cache)


def test_invalid_documents_are_never_kept(in_tmp: Path) -> None:
    write(in_tmp / "m.yaml", PROCESS.format(name="a") + "  restartPolicy: Sometimes\n")
    cache = SpecCache()
    for _ in range(2):
        with pytest.raises(ManifestError):
            load_specs(["m.yaml"], cache=cache)
    assert len(cache) == 0 and cache.hits == 0


def test_duplicates_across_cached_and_fresh_documents_are_found(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a"))
    cache = SpecCache()
    load_specs(["a.yaml"], cache=cache)
    write(in_tmp / "b.yaml", PROCESS.format(name="a"))
    found = [str(p) for p in pytest.raises(ManifestError, load_specs, ["a.yaml", "b.yaml"], cache=cache).value.problems]
    assert found == ["b.yaml:4:9: metadata.name: duplicate Process default/a, first defined at a.yaml:4:9"]


def test_the_schemas_and_the_version_are_part_of_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = SpecCache()._key("m.yaml", "text")
    changed = {key: {**schema, "description": "another version"} for key, schema in cache_module.schemas().items()}
    monkeypatch.setattr(cache_module, "schemas", lambda: changed)
    assert SpecCache()._key("m.yaml", "text") != before
    monkeypatch.setattr(cache_module, "__version__", "99.0.0")
    assert SpecCache()._key("m.yaml", "text") not in (before,)


def test_the_cache_is_bounded(in_tmp: Path) -> None:
    cache = SpecCache(capacity=3)
    write(in_tmp / "m.yaml", documents(*(PROCESS.format(name=f"p{i}") for i in range(5))))
    load_specs(["m.yaml"], cache=cache)
    assert len(cache) == 3


# -- through the daemon ---------------------------------------------------------------------------------


def test_apply_sends_texts_and_the_daemon_reuses_what_it_checked(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(*(process(f"p{i}") for i in range(5))))
    orch.ok("apply", "-f", str(manifest))
    first = orch.api("GET", "/health")["documents"]
    orch.ok("apply", "-f", str(manifest))
    second = orch.api("GET", "/health")["documents"]
    assert second["hits"] - first["hits"] == 5 and second["misses"] == first["misses"]


def test_an_edited_env_file_restarts_the_process_with_the_new_value(orch: Orchestrator) -> None:
    env = orch.write("m/app.env", "MODE=one\n")
    manifest = orch.write("m/app.yaml", process("a", envFrom=[{"file": "app.env"}]))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a")
    assert psutil.Process(before["a"][0]).environ()["MODE"] == "one"
    env.write_text("MODE=two\n")
    orch.ok("apply", "-f", str(manifest))
    after = orch.wait_running("a", replacing=before)
    assert psutil.Process(after["a"][0]).environ()["MODE"] == "two"


def test_relative_paths_mean_the_same_from_any_directory(orch: Orchestrator, tmp_path: Path) -> None:
    orch.write("m/app.yaml", process("a", workingDir="work"))
    (orch.root / "m/work").mkdir()
    first = orch.root / "m"
    applied = subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(orch.state), "apply", "-f",
                              "app.yaml"], cwd=first, capture_output=True, text=True, timeout=30, check=False)
    assert applied.returncode == 0, applied.stderr
    pids = orch.wait_running("a")
    assert psutil.Process(pids["a"][0]).cwd() == str(first / "work")
    broken = orch.write("m/app.yaml", process("a", restartPolicy="Sometimes"))
    refused = subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(orch.state), "apply", "-f",
                              "app.yaml"], cwd=broken.parent, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("app.yaml:"), refused.stderr  # as the user named it, not the daemon's path
