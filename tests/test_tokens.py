"""API tokens (host/tokens.py, `orchestrator token`): real files in tmp dirs, the CLI run as subprocesses.

A created token is accepted with its scope and nothing near it is; a revoke counts at a live TokenCheck's next
call; the file is 0600 and holds digests, never a token; a file other users could read or write, or a link,
is refused, saying what to do; concurrent creates lose none; `list` shows neither a token nor a digest; and
scope_of compares against every digest whatever matches.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO

from orchestrator.core.errors import UserError
from orchestrator.host import tokens as tokens_module
from orchestrator.host.tokens import (
    MAX_BYTES,
    SCOPES,
    Token,
    TokenCheck,
    create_token,
    load_tokens,
    revoke_token,
    tokens_path,
)

CLI = [sys.executable, "-m", "orchestrator"]
NOW = 1_700_000_000.0


def token_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--state-dir", str(state), "token", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)


def created(state: Path, name: str, scope: str) -> str:
    result = token_cli(state, "create", name, "--scope", scope)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- the CLI ------------------------------------------------------------------------------------------------


def test_create_prints_the_token_alone_and_a_check_accepts_it_with_its_scope(state: Path) -> None:
    result = token_cli(state, "create", "ci", "--scope", "read")
    assert result.returncode == 0, result.stderr
    [token] = result.stdout.splitlines()
    assert result.stdout == token + "\n"
    assert token.startswith("orch_") and len(token) == len("orch_") + 43
    assert result.stderr == ("token ci (scope read) created: it is shown only now; send it as "
                             "`Authorization: Bearer <token>`\n")
    admin = created(state, "deploy", "admin")
    check = TokenCheck(state)
    assert check.scope_of(token) == "read"
    assert check.scope_of(admin) == "admin"
    assert check.any()


def test_create_json(state: Path) -> None:
    result = token_cli(state, "create", "dash", "--scope", "admin", "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert sorted(document) == ["created", "name", "scope", "token"]
    assert document["name"] == "dash" and document["scope"] == "admin"
    assert abs(document["created"] - load_tokens(state)[0].created) < 1e-6
    assert TokenCheck(state).scope_of(document["token"]) == "admin"


def test_near_misses_are_refused(state: Path) -> None:
    token = created(state, "ci", "admin")
    check = TokenCheck(state)
    other = "orch_" + "A" * 43
    for presented in ("", "orch_", token[:-1], token[:10], token + "x", " " + token, token.upper(), other,
                      "\udcff", tokens_module.digest_of(token)):
        assert check.scope_of(presented) is None, presented
    assert check.scope_of(token) == "admin"


def test_a_revoke_counts_for_a_live_check_without_a_new_one(state: Path) -> None:
    ci = created(state, "ci", "read")
    keep = created(state, "keep", "admin")
    check = TokenCheck(state)
    assert check.scope_of(ci) == "read"
    result = token_cli(state, "revoke", "ci")
    assert (result.returncode, result.stdout) == (0, "token ci revoked\n"), result.stderr
    assert check.scope_of(ci) is None
    assert check.scope_of(keep) == "admin"
    again = created(state, "ci", "admin")  # the name is free again, and the new token counts at once
    assert check.scope_of(again) == "admin" and check.scope_of(ci) is None
    for name in ("ci", "keep"):
        assert token_cli(state, "revoke", name).returncode == 0
    assert not check.any() and check.scope_of(keep) is None


def test_revoking_what_is_not_there_says_so(state: Path) -> None:
    result = token_cli(state, "revoke", "nope")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "orchestrator: no token named nope\n"
    assert not state.exists()  # neither revoke nor list makes a state dir
    assert token_cli(state, "list").stdout == "No tokens.\n"
    assert not state.exists()
    created(state, "ci", "read")
    assert token_cli(state, "revoke", "other").returncode == 1
    assert [token.name for token in load_tokens(state)] == ["ci"]


def test_the_file_is_owner_only_and_holds_no_token(state: Path) -> None:
    printed = [created(state, "ci", "read"), created(state, "deploy", "admin")]
    path = tokens_path(state)
    assert path == state / "tokens.json"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600 and stat.S_ISREG(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(state / "tokens.lock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in os.listdir(state):
        data = (state / name).read_bytes()
        for token in printed:
            assert token.encode() not in data and token[5:].encode() not in data, name
    assert sorted(os.listdir(state)) == ["tokens.json", "tokens.lock"]  # no temporary file left behind
    stored = {token.name: token for token in load_tokens(state)}
    assert stored["ci"].digest == tokens_module.digest_of(printed[0]) and stored["deploy"].scope == "admin"


def test_duplicate_names_are_refused(state: Path) -> None:
    first = created(state, "ci", "read")
    before = tokens_path(state).read_bytes()
    result = token_cli(state, "create", "ci", "--scope", "admin")
    assert (result.returncode, result.stdout) == (1, "")
    assert "a token named 'ci' exists already: revoke it first" in result.stderr
    assert tokens_path(state).read_bytes() == before
    assert TokenCheck(state).scope_of(first) == "read"


@pytest.mark.parametrize("name", ["", "A", "Ci", "-ci", "_ci", ".ci", "a" * 64, "c i", "a/b", "ci\n", "é", "a:b"])
def test_a_name_that_is_not_a_token_name_is_refused(state: Path, name: str) -> None:
    result = token_cli(state, "create", "--scope", "read", "--", name)  # (--: "-ci" is a name, not an option)
    assert (result.returncode, result.stdout) == (1, ""), name
    assert "refused: 1-63 characters" in result.stderr and "Traceback" not in result.stderr
    assert load_tokens(state) == []


@pytest.mark.parametrize("name", ["a", "0", "a" * 63, "ci-1.prod_x", "9.9"])
def test_token_names(state: Path, name: str) -> None:
    token = create_token(state, name, "read", NOW)
    assert TokenCheck(state).scope_of(token) == "read"
    assert load_tokens(state) == [Token(name, "read", tokens_module.digest_of(token), NOW)]


def test_a_scope_that_is_not_one_is_refused(state: Path) -> None:
    with pytest.raises(UserError, match="scope 'write' refused: one of read, admin"):
        create_token(state, "ci", "write", NOW)
    assert SCOPES == ("read", "admin")
    assert token_cli(state, "create", "ci", "--scope", "write").returncode == 2  # argparse's choices


def test_twenty_concurrent_creates_lose_none(state: Path) -> None:
    names = [f"t{i:02d}" for i in range(20)]
    runs = [subprocess.Popen([*CLI, "--state-dir", str(state), "token", "create", name, "--scope",
                              "admin" if i % 2 else "read"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=REPO) for i, name in enumerate(names)]
    printed = {}
    for name, run in zip(names, runs):
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 0, stderr
        printed[name] = stdout.strip()
    assert sorted(token.name for token in load_tokens(state)) == names
    check = TokenCheck(state)
    for i, name in enumerate(names):
        assert check.scope_of(printed[name]) == ("admin" if i % 2 else "read")
    assert sorted(os.listdir(state)) == ["tokens.json", "tokens.lock"]


def test_list_shows_neither_a_token_nor_its_digest(state: Path) -> None:
    printed = {"ci": created(state, "ci", "read"), "deploy": created(state, "deploy", "admin")}
    digests = [token.digest for token in load_tokens(state)]
    text = token_cli(state, "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "CREATED"]
    assert [line.split()[:2] for line in lines[1:]] == [["ci", "read"], ["deploy", "admin"]]
    assert all(line.endswith("s ago") for line in lines[1:]), lines
    listed = token_cli(state, "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [sorted(entry) for entry in document["tokens"]] == [["created", "name", "scope"]] * 2
    assert [(entry["name"], entry["scope"]) for entry in document["tokens"]] == [("ci", "read"), ("deploy", "admin")]
    for output in (text.stdout + text.stderr, listed.stdout + listed.stderr):
        for token in printed.values():
            assert token[5:13] not in output
        for digest in digests:
            assert digest[:8] not in output


def test_list_json_without_tokens(state: Path) -> None:
    assert json.loads(token_cli(state, "list", "-o", "json").stdout) == {"tokens": []}


@pytest.mark.parametrize(("verb", "described"), [
    ([], "API tokens for the daemon's HTTP listener"), (["create"], "Make a new token named NAME"),
    (["list"], "One row per token"), (["revoke"], "Forget the token NAME")])
def test_help_on_every_verb(state: Path, verb: list[str], described: str) -> None:
    result = token_cli(state, *verb, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(" ".join(["usage: orchestrator token", *verb]))
    assert described in " ".join(result.stdout.split())
    assert not state.exists()


# -- the file's trust ---------------------------------------------------------------------------------------


def test_a_group_readable_file_is_refused_naming_it_and_the_fix(state: Path) -> None:
    token = create_token(state, "ci", "admin", NOW)
    path = tokens_path(state)
    for mode in (0o640, 0o620, 0o604, 0o602):
        os.chmod(path, mode)
        with pytest.raises(UserError) as caught:
            load_tokens(state)
        assert str(caught.value) == (f"{path} is readable or writable by other users (mode {mode:04o}): refused, as "
                                     f"whoever can write it can give themselves a token; `chmod 600 {path}`")
    result = token_cli(state, "list")
    assert result.returncode == 1 and f"{path} is readable or writable by other users" in result.stderr
    assert token_cli(state, "create", "other", "--scope", "read").returncode == 1
    assert token_cli(state, "revoke", "ci").returncode == 1
    os.chmod(path, 0o600)
    assert TokenCheck(state).scope_of(token) == "admin"


def test_a_symlinked_file_is_refused_and_not_written_through(tmp_path: Path, state: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    create_token(elsewhere, "ci", "admin", NOW)
    target = tokens_path(elsewhere)
    before = target.read_bytes()
    state.mkdir(mode=0o700)
    os.symlink(target, tokens_path(state))
    with pytest.raises(UserError) as caught:
        load_tokens(state)
    assert str(caught.value).startswith(f"{tokens_path(state)} is a symbolic link: refused")
    assert "remove it" in str(caught.value)
    for args in (["create", "x", "--scope", "admin"], ["revoke", "ci"], ["list"]):
        result = token_cli(state, *args)
        assert result.returncode == 1 and "is a symbolic link: refused" in result.stderr, result
    assert target.read_bytes() == before and os.path.islink(tokens_path(state))
    with pytest.raises(UserError, match="symbolic link"):
        TokenCheck(state).any()


def test_a_symlinked_lock_is_not_followed(tmp_path: Path, state: Path) -> None:
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, state / "tokens.lock")
    result = token_cli(state, "create", "ci", "--scope", "read")
    assert result.returncode == 1 and "tokens.lock" in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text() == "precious\n" and not tokens_path(state).exists()


def test_what_is_not_a_regular_file_is_refused(state: Path) -> None:
    state.mkdir(mode=0o700)
    os.mkfifo(tokens_path(state), 0o600)  # would hang a plain open for reading
    with pytest.raises(UserError, match="tokens.json is not a regular file: refused; remove it"):
        load_tokens(state)
    os.unlink(tokens_path(state))
    tokens_path(state).mkdir(mode=0o700)
    with pytest.raises(UserError, match="tokens.json is not a regular file"):
        load_tokens(state)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_user_is_refused(state: Path) -> None:
    create_token(state, "ci", "admin", NOW)
    os.chown(tokens_path(state), 12345, -1)
    with pytest.raises(UserError, match=r"tokens.json belongs to uid 12345, not to you \(uid 0\): refused"):
        load_tokens(state)


@pytest.mark.parametrize("content", [
    b"", b"not json", b"\xff\xfe", b"[]", b'{"tokens": []}', b'{"version": 2, "tokens": []}',
    b'{"version": 1, "tokens": {}}', b'{"version": 1, "tokens": [1]}',
    b'{"version": 1, "tokens": [{"name": "ci", "scope": "read", "digest": "' + b"0" * 64 + b'"}]}',
    b'{"version": 1, "tokens": [{"name": "ci", "scope": "root", "digest": "' + b"0" * 64 + b'", "created": 1}]}',
    b'{"version": 1, "tokens": [{"name": "Ci", "scope": "read", "digest": "' + b"0" * 64 + b'", "created": 1}]}',
    b'{"version": 1, "tokens": [{"name": "ci", "scope": "read", "digest": "' + b"A" * 64 + b'", "created": 1}]}',
    b'{"version": 1, "tokens": [{"name": "ci", "scope": "read", "digest": "00", "created": 1}]}',
    b'{"version": 1, "tokens": [{"name": "ci", "scope": "read", "digest": "' + b"0" * 64 + b'", "created": true}]}',
    b'{"version": 1, "tokens": [' + b", ".join([b'{"name": "ci", "scope": "read", "digest": "' + b"0" * 64
                                               + b'", "created": 1}'] * 2) + b"]}",
    b"[" * 100_000,
], ids=lambda content: content[:40].decode(errors="replace"))
def test_a_malformed_file_is_refused_naming_it(state: Path, content: bytes) -> None:
    state.mkdir(mode=0o700)
    fd = os.open(tokens_path(state), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(UserError) as caught:
        load_tokens(state)
    assert str(caught.value).startswith(f"{tokens_path(state)} is malformed (")
    assert "fix it, or remove it" in str(caught.value)


def test_a_file_past_the_budget_is_refused_unread(state: Path) -> None:
    state.mkdir(mode=0o700)
    fd = os.open(tokens_path(state), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b" " * (MAX_BYTES + 1))
    os.close(fd)
    with pytest.raises(UserError, match=f"is larger than {MAX_BYTES // 1024} KiB: refused"):
        load_tokens(state)


def test_a_state_dir_others_can_write_to_is_refused(state: Path) -> None:
    state.mkdir(mode=0o700)
    os.chmod(state, 0o777)
    result = token_cli(state, "create", "ci", "--scope", "read")
    assert result.returncode == 1 and "is writable by other users (mode 0777): refused" in result.stderr
    assert os.listdir(state) == []


# -- TokenCheck ---------------------------------------------------------------------------------------------


def test_scope_of_compares_against_every_digest_whatever_matches(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    printed = [create_token(state, f"t{i}", SCOPES[i % 2], NOW) for i in range(5)]
    check = TokenCheck(state)
    calls: list[tuple[str, str]] = []
    real = tokens_module.hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", counting)
    stored = {token.digest for token in load_tokens(state)}
    for presented, scope in [(printed[0], "read"), (printed[4], "read"), (printed[3], "admin"), ("wrong", None),
                             ("", None)]:
        calls.clear()
        assert check.scope_of(presented) == scope
        assert len(calls) == 5
        assert {b for _, b in calls} == stored  # each stored digest once, none skipped after a match
        assert all(a == tokens_module.digest_of(presented) for a, _ in calls)  # digests, never the text


def test_a_check_reads_the_file_only_when_it_changed(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = create_token(state, "ci", "admin", NOW)
    reads = []
    real = tokens_module._read

    def counting(path: Path) -> object:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(tokens_module, "_read", counting)
    check = TokenCheck(state)
    for _ in range(10):
        assert check.scope_of(token) == "admin"
    assert check.any()
    assert len(reads) == 1
    create_token(state, "other", "read", NOW)
    reads.clear()  # (create read it too)
    assert check.scope_of(token) == "admin" and check.scope_of(token) == "admin" and len(reads) == 1
    assert revoke_token(state, "ci")
    reads.clear()
    assert check.scope_of(token) is None and check.any() and len(reads) == 1


def test_every_write_is_a_version_a_check_tells_apart(state: Path) -> None:
    """(inode, size, mtime) differs between any two writes, however fast: an inode freed by one replace may be
    reused by the next, with the same size, within one tick of the file system's clock."""
    create_token(state, "ab", "read", NOW)
    keys = []
    for i in range(40):
        if i % 2:
            create_token(state, "ab", "read", NOW)
        else:
            assert revoke_token(state, "ab")
            create_token(state, "cd", "read", NOW)
            assert revoke_token(state, "cd")
        info = os.stat(tokens_path(state))
        keys.append((info.st_ino, info.st_size, info.st_mtime_ns))
    assert len(set(keys)) == len(keys)
    assert [key[2] for key in keys] == sorted(key[2] for key in keys)


def test_a_file_that_becomes_unusable_is_refused_until_fixed(state: Path) -> None:
    token = create_token(state, "ci", "admin", NOW)
    check = TokenCheck(state)
    assert check.scope_of(token) == "admin"
    os.chmod(tokens_path(state), 0o646)
    # What is told apart is the file's versions: a mode change alone leaves the tokens as they were; what
    # another user then writes changes its mtime (a time of one's choosing takes the owner), and is refused.
    info = os.stat(tokens_path(state))
    os.utime(tokens_path(state), ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    with pytest.raises(UserError, match="readable or writable by other users"):
        check.scope_of(token)
    with pytest.raises(UserError, match="readable or writable by other users"):
        check.scope_of(token)  # still: nothing was kept from the version before
    os.chmod(tokens_path(state), 0o600)
    assert check.scope_of(token) == "admin"
    os.unlink(tokens_path(state))
    assert check.scope_of(token) is None and not check.any()


def test_a_check_without_a_file_accepts_nothing(state: Path) -> None:
    check = TokenCheck(state)
    assert not check.any() and check.scope_of("") is None and check.scope_of("orch_x") is None
    assert not state.exists()


def test_many_threads_ask_while_tokens_come_and_go(state: Path) -> None:
    keep = create_token(state, "keep", "admin", NOW)
    check = TokenCheck(state)
    stop = threading.Event()
    answers: list[object] = []

    def ask() -> None:
        while not stop.is_set():
            try:
                answers.append(check.scope_of(keep))
            except Exception as error:  # noqa: BLE001 - any failure is the test's finding
                answers.append(error)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for i in range(30):
            create_token(state, f"t{i}", "read", NOW)
            if i % 3 == 0:
                assert revoke_token(state, f"t{i}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert answers and set(map(str, answers)) == {"admin"}
    assert len(load_tokens(state)) == 1 + 30 - 10
