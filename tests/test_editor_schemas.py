"""The schemas in the tools editors and CI use, run for real: check-jsonschema, ajv-cli in strict mode,
yaml-language-server through its stdio LSP protocol, and the pre-commit hook through `pre-commit try-repo`.

Each tool is given the examples (every document valid) and the broken manifests of BROKEN, which it must
refuse at the field the orchestrator names. check-jsonschema and ajv-cli read one YAML document per file
(check-jsonschema's issue #222; ajv-cli's js-yaml `safeLoad`), so a multi-document file is given to them cut at
its `---` lines, as split_documents cuts it; yaml-language-server reads the file whole, a schema per document.

ajv-cli and yaml-language-server are npm packages, installed by .ci/run into .ci-node/ (`npm install --prefix
.ci-node ...`; $ORCHESTRATOR_NODE_TOOLS names another npm prefix): their tests skip where node or npm is not
installed, and fail, saying what to run, where they are but the packages are not.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from orchestrator.manifests.loader import split_documents

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"
MANIFEST_SCHEMA = SCHEMAS / "manifest.v1.json"
EXAMPLES = sorted((REPO / "examples" / "manifests").glob("*.yaml"))
NODE_PREFIX = Path(os.environ.get("ORCHESTRATOR_NODE_TOOLS") or REPO / ".ci-node")
TIMEOUT = 60  # seconds any one tool may take; past it the test fails


class Broken(NamedTuple):
    """A manifest every tool must refuse, and where each says the problem is."""

    name: str
    text: str
    line_of: str  # the line `orchestrator validate` gives: the first line holding this text
    field: str  # the field it names
    json_path: str  # where check-jsonschema says the problem is (jsonschema's path)
    pointer: str  # where ajv says it is (its instancePath)
    editor_line_of: str = ""  # the line yaml-language-server marks, where not line_of's (a missing field: its
    #                           mapping's key)


def _process(spec: str, kind: str = "Process", name: str = "api") -> str:
    return f"apiVersion: orchestrator/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{spec}"


_REPO = "  repo: https://git.example.org/ops/host.git\n"


BROKEN = [
    Broken("string-command", _process("  command: sleep 1\n"), "command:", "spec.command", "$.spec", "/spec",
           "spec:"),
    Broken("shell-argv", _process("  command: [sleep, '1']\n  shell: true\n"), "command:", "spec.command",
           "$.spec.command", "/spec/command"),
    # jsonschema loses the path of a `false` subschema's error: check-jsonschema says $.spec.
    Broken("replicas-and-autoscale",
           _process("  command: [x]\n  replicas: 2\n  autoscale: {min: 1, max: 3, targetCPUPercent: 50}\n"),
           "replicas:", "spec.replicas", "$.spec", "/spec/replicas"),
    Broken("process-field-in-a-job", _process("  command: [x]\n  replicas: 2\n", kind="Job"), "replicas:", "spec",
           "$.spec", "/spec"),
    Broken("unknown-kind", _process("  command: [x]\n", kind="Service"), "kind:", "kind", "$.kind", "/kind"),
    Broken("bad-name", _process("  command: [x]\n", name="Bad_Name"), "name:", "metadata.name", "$.metadata.name",
           "/metadata/name"),
    Broken("probe-with-two-actions", _process("  command: [x]\n  probes:\n    liveness: {tcp: {port: 1}, http: "
                                              "{port: 1}}\n"), "liveness:", "spec.probes.liveness",
           "$.spec.probes.liveness", "/spec/probes/liveness"),
    Broken("missing-command", _process("  shell: true\n"), "shell:", "spec", "$.spec", "/spec", "spec:"),
    Broken("mode-on-a-tcp-socket", _process("  command: [x]\n  sockets:\n    - name: http\n      listen: "
                                            "tcp://0.0.0.0:8080\n      mode: '0660'\n"), "mode:",
           "spec.sockets[0].mode", "$.spec.sockets[0]", "/spec/sockets/0/mode"),
    Broken("rolling-update-of-a-recreate", _process("  command: [x]\n  strategy:\n    type: Recreate\n"
                                                    "    rollingUpdate: {maxSurge: 1}\n"), "rollingUpdate:",
           "spec.strategy.rollingUpdate", "$.spec.strategy", "/spec/strategy/rollingUpdate"),
    Broken("gitsync-abbreviated-commit", _process(f"{_REPO}  ref:\n    commit: 3f2a1c9\n", kind="GitSync"), "commit:",
           "spec.ref.commit", "$.spec.ref.commit", "/spec/ref/commit"),
    Broken("gitsync-unknown-field", _process(f"{_REPO}  ref: {{branch: main}}\n  intervalSecond: 60\n", kind="GitSync"),
           "intervalSecond:", "spec", "$.spec", "/spec"),
    Broken("alertrule-bad-severity", _process("  selector: {process: api}\n  condition: {down: {}}\n  severity: page\n",
                                              kind="AlertRule"), "severity:", "spec.severity", "$.spec.severity",
           "/spec/severity"),
    Broken("alertrule-cpu-of-what", _process("  selector: {process: api}\n  condition:\n    cpu: {abovePercent: 80, of: host}\n",
                                             kind="AlertRule"), "cpu:", "spec.condition.cpu.of",
           "$.spec.condition.cpu.of", "/spec/condition/cpu/of"),
    Broken("notifier-timeout-too-long", _process("  exec:\n    command: [/bin/true]\n    timeoutSeconds: 7200\n",
                                                 kind="Notifier"), "timeoutSeconds:", "spec.exec.timeoutSeconds",
           "$.spec.exec.timeoutSeconds", "/spec/exec/timeoutSeconds"),
    Broken("cronjob-template-backoff-limit", _process("  schedule: '*/15 * * * *'\n  jobTemplate:\n    command: [x]\n"
                                                      "    backoffLimit: -1\n", kind="CronJob"), "backoffLimit:",
           "spec.jobTemplate.backoffLimit", "$.spec.jobTemplate.backoffLimit", "/spec/jobTemplate/backoffLimit"),
    Broken("cronjob-bad-policy", _process("  intervalSeconds: 60\n  concurrencyPolicy: Skip\n  jobTemplate: {command: [x]}\n",
                                          kind="CronJob"), "concurrencyPolicy:", "spec.concurrencyPolicy",
           "$.spec.concurrencyPolicy", "/spec/concurrencyPolicy"),
    Broken("queue-bad-preemption", _process("  maxConcurrent: 2\n  preemption: Kill\n", kind="Queue"), "preemption:",
           "spec.preemption", "$.spec.preemption", "/spec/preemption"),
    Broken("job-bad-priority-class", _process("  command: [x]\n  queue: batch\n  priorityClass: Urgent\n", kind="Job"),
           "priorityClass:", "spec.priorityClass", "$.spec.priorityClass", "/spec/priorityClass"),
    Broken("queue-field-in-a-process", _process("  command: [x]\n  queue: batch\n"), "queue:", "spec", "$.spec",
           "/spec"),
]


def line_number(text: str, marker: str) -> int:
    """The 1-based number of the first line of `text` that holds `marker`."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if marker in line)


def single_documents(folder: Path, file: Path) -> list[Path]:
    """`file` cut into files of one document each (those that hold more than comments), in `folder`."""
    written = []
    for index, (_, text) in enumerate(split_documents(file.read_text())):
        if any(line.strip() and not line.lstrip().startswith(("#", "---")) for line in text.splitlines()):
            written.append(folder / f"{file.stem}.{index}.yaml")
            written[-1].write_text(text)
    return written


def run(argv: list[str], cwd: Path = REPO, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def broken_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for case in BROKEN:
        files[case.name] = tmp_path / f"{case.name}.yaml"
        files[case.name].write_text(case.text)
    return files


# -- the orchestrator itself: what the tools below must agree with -------------------------------------------


@pytest.mark.parametrize("case", BROKEN, ids=lambda c: c.name)
def test_the_orchestrator_names_each_broken_field(tmp_path: Path, case: Broken) -> None:
    (tmp_path / "m.yaml").write_text(case.text)
    result = run([sys.executable, "-m", "orchestrator", "validate", "-f", str(tmp_path / "m.yaml")])
    assert result.returncode == 1, result.stderr
    problems = result.stderr.splitlines()[:-1]
    assert len(problems) == 1, result.stderr  # one message per problem
    assert problems[0].startswith(f"{tmp_path / 'm.yaml'}:{line_number(case.text, case.line_of)}:")
    assert f": {case.field}: " in problems[0], result.stderr


# -- check-jsonschema ------------------------------------------------------------------------------------------


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    try:
        import check_jsonschema  # noqa: F401 - only whether it is installed
    except ImportError:
        pytest.fail("check-jsonschema is not installed: pip install -e '.[test]'")
    return run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(MANIFEST_SCHEMA), "-o", "json",
                *map(str, files)])


def test_check_jsonschema_passes_every_example_document(tmp_path: Path) -> None:
    documents = [doc for example in EXAMPLES for doc in single_documents(tmp_path, example)]
    assert len(documents) == 4
    result = check_jsonschema(*documents)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "ok"


def test_check_jsonschema_refuses_each_broken_manifest_at_its_field(broken_files: dict[str, Path]) -> None:
    result = check_jsonschema(*broken_files.values())
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["parse_errors"] == []
    for case in BROKEN:
        paths = [e["path"] for e in report["errors"] if e["filename"] == str(broken_files[case.name])]
        assert paths == [case.json_path], (case.name, report["errors"])


def test_check_jsonschema_finds_the_broken_document_of_a_multi_document_file(tmp_path: Path) -> None:
    text = EXAMPLES[0].read_text()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "app.yaml").write_text(text.replace("replicas: 2", "replicas: -2"))
    documents = single_documents(tmp_path, tmp_path / "in" / "app.yaml")
    result = check_jsonschema(*documents)
    assert result.returncode == 1
    errors = json.loads(result.stdout)["errors"]
    assert [(Path(e["filename"]).name, e["path"]) for e in errors] == [("app.1.yaml", "$.spec.replicas")]


# -- ajv-cli, strict --------------------------------------------------------------------------------------------


def node_tool(name: str) -> Path:
    """The npm package's program in NODE_PREFIX; skips where node or npm is missing."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: ajv-cli and yaml-language-server run on node")
    path = NODE_PREFIX / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {NODE_PREFIX}: run the npm install line of .ci/run "
                    "(`npm install --prefix .ci-node ...`), or set ORCHESTRATOR_NODE_TOOLS to an npm prefix that has it")
    return path


# Relative references resolve by the names the schemas are given on the command line, so ajv runs in schemas/.
AJV_SCHEMAS = ["-s", "manifest.v1.json", "-r", "process.v1.json", "-r", "job.v1.json", "-r", "gitsync.v1.json",
               "-r", "alertrule.v1.json", "-r", "notifier.v1.json", "-r", "cronjob.v1.json",
               "-r", "queue.v1.json"]


def ajv(*words: str) -> subprocess.CompletedProcess[str]:
    return run([str(node_tool("ajv")), *words[:1], "--spec=draft2020", "--strict=true", *words[1:]], cwd=SCHEMAS)


@pytest.mark.parametrize("schema", [["-s", "process.v1.json"], ["-s", "job.v1.json"], ["-s", "gitsync.v1.json"],
                                    ["-s", "alertrule.v1.json"], ["-s", "notifier.v1.json"], ["-s", "cronjob.v1.json"],
                                    ["-s", "queue.v1.json"], AJV_SCHEMAS],
                         ids=["process", "job", "gitsync", "alertrule", "notifier", "cronjob", "queue", "manifest"])
def test_ajv_compiles_every_schema_in_strict_mode(schema: list[str]) -> None:
    result = ajv("compile", *schema)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"schema {schema[1]} is valid" in result.stdout


def test_ajv_validates_every_example_document(tmp_path: Path) -> None:
    documents = [doc for example in EXAMPLES for doc in single_documents(tmp_path, example)]
    result = ajv("validate", *AJV_SCHEMAS, *(word for doc in documents for word in ("-d", str(doc))))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if line.endswith(" valid")] == [
        f"{doc} valid" for doc in documents]


@pytest.mark.parametrize("case", BROKEN, ids=lambda c: c.name)
def test_ajv_refuses_each_broken_manifest_at_its_field(broken_files: dict[str, Path], case: Broken) -> None:
    result = ajv("validate", *AJV_SCHEMAS, "--all-errors", "--errors=json", "-d", str(broken_files[case.name]))
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stderr + result.stdout
    errors = json.loads(output[output.index("["):])
    # Beside the error itself, ajv lists every if/then around it, at the mappings above it.
    assert case.pointer in {error["instancePath"] for error in errors}, errors
    assert all(case.pointer.startswith(error["instancePath"]) for error in errors), errors


# -- yaml-language-server, over the Language Server Protocol on its stdin and stdout --------------------------


class LanguageServer:
    """A client of the protocol, as an editor is: Content-Length framed JSON-RPC over the server's stdio."""

    def __init__(self, program: Path, settings: dict[str, Any], root: Path) -> None:
        self.settings = settings
        self.process = subprocess.Popen([str(program), "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, cwd=root)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.stdout, selectors.EVENT_READ)
        self.buffer = b""
        self.last_id = 0
        answer = self.request("initialize", {
            "processId": os.getpid(), "rootUri": root.as_uri(),
            "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
            "capabilities": {"workspace": {"configuration": True}, "textDocument": {"publishDiagnostics": {}}},
        })
        assert answer["result"]["serverInfo"]["name"] == "yaml-language-server", answer
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": settings})

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.stdin.write(b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        self.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any) -> dict[str, Any]:
        self.last_id += 1
        asked = self.last_id
        self.send({"id": asked, "method": method, "params": params})
        return self.until(lambda message: message.get("id") == asked and "method" not in message)

    def until(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message that is `wanted`; the server's own requests on the way are answered."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if "id" in message and "method" in message:  # the server asks: its settings, or leave to register
                configuration = message["method"] == "workspace/configuration"
                result = ([self.settings.get(item.get("section", ""), None) for item in message["params"]["items"]]
                          if configuration else None)
                self.send({"id": message["id"], "result": result})
            elif wanted(message):
                return message

    def _next(self, deadline: float) -> dict[str, Any]:
        while True:
            head, separator, rest = self.buffer.partition(b"\r\n\r\n")
            if separator:
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    return json.loads(rest[:length])  # type: ignore[no-any-return]
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise TimeoutError("yaml-language-server sent nothing more in time")
            chunk = self.stdout.read(1 << 16)
            if not chunk:
                raise EOFError("yaml-language-server ended")
            self.buffer += chunk

    def diagnostics(self, file: Path, text: str | None = None) -> list[tuple[int, str]]:
        """Open `file` as an editor does; the (1-based line, message) of each diagnostic the server publishes."""
        text = file.read_text() if text is None else text
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": file.as_uri(), "languageId": "yaml", "version": 1, "text": text}})
        published = self.until(lambda message: message.get("method") == "textDocument/publishDiagnostics"
                               and message["params"]["uri"] == file.as_uri())
        return [(d["range"]["start"]["line"] + 1, d["message"]) for d in published["params"]["diagnostics"]]

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.selector.close()
            self.stdin.close()
            self.stdout.close()


SETTINGS: dict[str, Any] = {"yaml": {"validate": True, "schemaStore": {"enable": False}, "schemas": {}}}
MODELINE = f"# yaml-language-server: $schema={MANIFEST_SCHEMA}\n"


@contextlib.contextmanager
def language_server(root: Path, settings: dict[str, Any] = SETTINGS) -> Iterator[LanguageServer]:
    server = LanguageServer(node_tool("yaml-language-server"), settings, root)
    try:
        yield server
    finally:
        server.close()


def with_modelines(text: str) -> str:
    """`text` with the modeline heading each of its documents: yaml-language-server reads it per document."""
    return MODELINE + text.replace("\n---\n", "\n---\n" + MODELINE)


def test_yaml_language_server_marks_the_line_of_each_broken_field(tmp_path: Path) -> None:
    found = {}
    with language_server(tmp_path) as server:
        for case in BROKEN:
            file = tmp_path / f"{case.name}.yaml"
            file.write_text(with_modelines(case.text))
            found[case.name] = server.diagnostics(file)
    for case in BROKEN:
        line = line_number(with_modelines(case.text), case.editor_line_of or case.line_of)
        assert found[case.name], f"no diagnostic for {case.name}"
        assert {at for at, _ in found[case.name]} == {line}, (case.name, found[case.name])


def test_yaml_language_server_finds_nothing_in_the_examples(tmp_path: Path) -> None:
    modeline = "# yaml-language-server: $schema=../../schemas/manifest.v1.json"
    copies = tmp_path / "examples" / "manifests"
    copies.mkdir(parents=True)
    (tmp_path / "schemas").symlink_to(SCHEMAS)
    with language_server(tmp_path) as server:
        for example in EXAMPLES:
            text = example.read_text()
            assert text.count(modeline) == text.count("\n---\n") + 1, example
            assert server.diagnostics(example) == [], example
            # The examples' modelines (relative to their folder) found the schema: a copy with a mistake in its
            # last document, as far from a schemas/ folder as they are, is refused there.
            lines = text.splitlines(keepends=True)
            last = max(index for index, line in enumerate(lines) if line.startswith("kind:"))
            lines[last] = "kind: Service\n"
            broken = copies / example.name
            broken.write_text("".join(lines))
            assert server.diagnostics(broken) == [
                (last + 1, 'Value is not accepted. Valid values: "Process", "Job", "GitSync", "AlertRule", "Notifier", "CronJob", "Queue".')], example


def test_yaml_language_server_with_the_schema_set_for_a_folder(tmp_path: Path) -> None:
    """`yaml.schemas` in the editor's settings, as README.md gives it for VS Code's settings.json (a path from
    the workspace's root): every document of every file it matches, no modeline needed."""
    (tmp_path / "manifests" / "shop").mkdir(parents=True)
    (tmp_path / "schemas").symlink_to(SCHEMAS)
    settings = {"yaml": {**SETTINGS["yaml"], "schemas": {"./schemas/manifest.v1.json": ["manifests/**/*.yaml"]}}}
    with language_server(tmp_path, settings) as server:
        good, bad = tmp_path / "manifests" / "shop" / "db.yaml", tmp_path / "manifests" / "shop" / "bad.yaml"
        text = EXAMPLES[1].read_text().replace("# yaml-language-server: $schema=../../schemas/manifest.v1.json\n", "")
        good.write_text(text)
        bad.write_text(text.replace("backoffLimit: 3", "backoffLimit: -3"))
        assert server.diagnostics(bad) == [(line_number(bad.read_text(), "backoffLimit"),
                                            "Value is below the minimum of 0.")]
        assert server.diagnostics(good) == []


# -- the pre-commit hook -----------------------------------------------------------------------------------------


def test_the_hook_module_turns_files_into_validate_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli.precommit import main

    assert main([str(example) for example in EXAMPLES]) == 0
    assert capsys.readouterr().out == "valid: 4 objects in 2 files\n"
    assert main([str(EXAMPLES[0])]) == 1  # api depends on db and migrate, defined in the other file
    assert main(["-f", str(EXAMPLES[1].parent), str(EXAMPLES[0])]) == 0  # the folder as well: both found
    assert main([]) == 0  # pre-commit matched nothing


def test_the_hooks_file_is_a_valid_pre_commit_manifest() -> None:
    result = run([sys.executable, "-m", "pre_commit", "validate-manifest", str(REPO / ".pre-commit-hooks.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def _snapshot(folder: Path) -> Path:
    """This checkout's package as a git repository of one commit: what try-repo installs (the working tree,
    whatever is committed or not), apart from the repository other work goes on in."""
    repo = folder / "orchestrator-src"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(REPO / name, repo / name)
    for name in ("orchestrator", "schemas"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "snapshot")
    return repo


def git(repo: Path, *words: str) -> None:
    run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false",
         *words], cwd=repo).check_returncode()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: pre-commit needs it")
def test_pre_commit_try_repo_refuses_a_bad_manifest_and_passes_a_good_one(tmp_path: Path) -> None:
    """One try-repo run (it builds the hook's virtualenv with pip, from PyPI: about 25 s) on three staged
    manifests: a good one, one depending on it (found: the hook sees every file at once), and a bad one."""
    try:
        import pre_commit  # noqa: F401 - only whether it is installed
    except ImportError:
        pytest.fail("pre-commit is not installed: pip install -e '.[test]'")
    hooks = _snapshot(tmp_path)
    work = tmp_path / "work"
    (work / "deploy" / "manifests").mkdir(parents=True)
    manifests = work / "deploy" / "manifests"
    (manifests / "db.yaml").write_text(_process("  command: [sleep, '60']\n", name="db"))
    (manifests / "api.yaml").write_text(_process("  command: [sleep, '60']\n  dependsOn: [{name: db}]\n"))
    (manifests / "bad.yaml").write_text(_process("  command: sleep 1\n", name="bad"))
    (work / "notes.yaml").write_text("not: a manifest\n")  # outside manifests/: not the hook's
    git(work, "init", "-q")
    git(work, "add", "-A")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRE_COMMIT", "GIT_"))}
    result = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "orchestrator-validate",
                             "--all-files", "--color", "never"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "orchestrator validate" in output and "Failed" in output, output
    problems = [line for line in output.splitlines() if line.startswith("deploy/manifests/")]
    assert problems == [("deploy/manifests/bad.yaml:6:12: spec.command: command is a string: set shell: true or "
                         "give an argv list")], output
    assert "1 problem found" in output, output
