"""`orchestrator convert`: Procfile, Compose, supervisord and PM2 files as manifests, end to end.

Each format's example is converted by the real command, checked by `orchestrator validate`, read back field by
field with its notes on stderr, and for each format the converted manifests are run (`run --exit-code-from`,
with small real programs that finish). Then inputs that are broken, hostile or not what they claim to be: exit
1 with a located message and no traceback, nothing run. The pure pieces (durations, sizes, shell words, the
JavaScript literal reader) have tables of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.core.errors import Location
from orchestrator.manifests.convert import detect
from orchestrator.manifests.convert.jsliteral import NotData, read_module
from orchestrator.manifests.convert.result import Collector, document
from orchestrator.manifests.convert.values import duration, plain_words, sanitised, signal_name, size
from orchestrator.manifests.files import ReadLimits

CLI = [sys.executable, "-m", "orchestrator"]
PY = sys.executable  # replicas start with a fixed PATH: name the interpreter the tests run with


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, **(env or {})))


def converted(cwd: Path, *args: str) -> tuple[dict[str, dict], list[str]]:
    """The documents `convert` printed, by name, and its note lines; it must have succeeded."""
    result = cli("convert", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    documents = {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.stdout) if d}
    notes = [line for line in result.stderr.splitlines() if not line.startswith("converted ")]
    return documents, notes


def valid(path: Path, cwd: Path) -> None:
    result = cli("validate", "-f", str(path), cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


def run_until(manifests: Path, name: str, state: Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`orchestrator run --exit-code-from NAME`, ended (SIGTERM, then SIGKILL of its group) if it outlives
    `timeout`, so that no test leaves it or its replicas behind."""
    process = subprocess.Popen([*CLI, "--state-dir", str(state), "run", "-f", str(manifests), "--exit-code-from", name],
                               cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        pytest.fail(f"run did not finish within {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def line_of(text: str, needle: str, after: str = "") -> int:
    start = text.index(after) if after else 0
    return text[:text.index(needle, start)].count("\n") + 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- Procfile ---------------------------------------------------------------------------------------------------

PROCFILE = """\
# the shop, on Heroku
release: sh -c 'echo "${MSG:-migrated}" > release.txt'
web: python3 -m http.server $PORT
worker: python3 worker.py --queue default
Clock_2: cd jobs && python3 clock.py
"""


def test_procfile_maps_each_line_and_runs_its_release_phase(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / ".env").write_text("QUEUE=default\n")
    out = tmp_path / "manifests"
    out.mkdir()
    documents, notes = converted(tmp_path, "Procfile", "--output-file", str(out / "app.yaml"))
    assert documents == {}  # written to the file, not to stdout
    manifests = {d["metadata"]["name"]: d for d in yaml.safe_load_all((out / "app.yaml").read_text()) if d}
    assert list(manifests) == ["release", "web", "worker", "clock-2"]
    release, web, worker, clock = manifests.values()
    # Heroku's release phase: a Job every process waits for.
    assert release["kind"] == "Job" and release["spec"]["backoffLimit"] == 0
    assert release["spec"]["command"] == "sh -c 'echo \"$${MSG:-migrated}\" > release.txt'"  # for sh, not apply
    assert release["spec"]["shell"] is True
    assert web["spec"]["command"] == "python3 -m http.server $PORT" and web["spec"]["shell"] is True
    assert web["spec"]["env"] == {"PORT": "5100"}  # foreman's port of the second process type
    assert worker["spec"]["command"] == ["python3", "worker.py", "--queue", "default"]  # plain words: no shell
    assert "shell" not in worker["spec"]
    assert clock["spec"]["command"] == "cd jobs && python3 clock.py" and clock["spec"]["shell"] is True
    for process in (web, worker, clock):
        assert process["kind"] == "Process" and process["spec"]["restartPolicy"] == "Always"
        assert process["spec"]["dependsOn"] == [{"name": "release", "condition": "completed"}]
        assert process["spec"]["workingDir"] == ".."  # the Procfile's folder, seen from the output's
        assert process["spec"]["envFrom"] == [{"file": "../.env"}]
    assert "Procfile:3: web: uses $PORT, which foreman and honcho set: written as env PORT=5100" in "\n".join(notes)
    assert any(n.startswith("Procfile:5: Clock_2: name 'Clock_2' written as 'clock-2'") for n in notes)
    valid(out, tmp_path)
    # Only the release Job is run (the others would run until stopped): sh, not apply, expands ${MSG:-...}.
    (out / "app.yaml").write_text(yaml.safe_dump(release))
    result = run_until(out, "release", tmp_path / "state", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "release.txt").read_text() == "migrated\n"


# --- Compose ----------------------------------------------------------------------------------------------------


def compose_file(port: int) -> str:
    fetch = (f"import sys, urllib.request\nbody = urllib.request.urlopen('http://127.0.0.1:{port}/migrated.txt', "
             "timeout=5).read()\nsys.exit(0 if body == b'ok' else 3)")
    return f"""\
name: Shop_App
x-python: &python {PY}
services:
  db:
    image: postgres:16
    ports: ["5432:5432"]
  migrate:
    image: shop/app
    command: [*python, -c, "open('migrated.txt', 'w').write('ok')"]
    environment: [DATABASE_URL=postgres://db/shop]
  web:
    image: shop/app
    entrypoint: [*python, -m]
    command: http.server {port} --bind 127.0.0.1
    environment:
      GREETING: ${{GREETING:-hello}}
      WORKERS: 4
      RATIO: 1.10
      DEBUG: true
    env_file: web.env
    depends_on:
      migrate:
        condition: service_completed_successfully
      db:
        condition: service_healthy
    healthcheck:
      test: ["CMD", *python, -c, "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/')"]
      interval: 200ms
      timeout: 2s
      retries: 5
      start_period: 10s
    restart: unless-stopped
    stop_grace_period: 1m30s
    stop_signal: SIGINT
    labels:
      com.example.tier: frontend
    ports:
      - "{port}:{port}"
    volumes: [./data:/data]
  worker:
    build: .
    command: ["sleep", "60"]
    restart: on-failure:3
    deploy:
      replicas: 2
      resources:
        limits: {{memory: 512m, cpus: "0.5"}}
      placement: {{constraints: [node.role==manager]}}
    ulimits:
      nofile: 1024
  smoke:
    command: [*python, -c, "{fetch.encode('unicode_escape').decode()}"]
    depends_on:
      web: {{condition: service_healthy, restart: true}}
"""


def test_compose_maps_services_to_processes_and_jobs_with_a_note_for_the_rest(tmp_path: Path) -> None:
    text = compose_file(8080)
    (tmp_path / "docker-compose.yml").write_text(text)
    (tmp_path / "web.env").write_text("LOG_LEVEL=info\n")
    documents, notes = converted(tmp_path, "docker-compose.yml")
    assert list(documents) == ["migrate", "web", "worker", "smoke"]  # db has only an image
    migrate, web, worker, smoke = documents.values()
    assert all(d["metadata"]["namespace"] == "shop-app" for d in documents.values())
    # Waited for with service_completed_successfully: a Job, not retried (restart "no", Compose's default).
    assert migrate["kind"] == "Job" and migrate["spec"]["backoffLimit"] == 0
    assert migrate["spec"]["env"] == {"DATABASE_URL": "postgres://db/shop"}
    spec = web["spec"]
    assert web["kind"] == "Process" and web["metadata"]["labels"] == {"com.example.tier": "frontend"}
    assert spec["command"] == [PY, "-m", "http.server", "8080", "--bind", "127.0.0.1"]  # entrypoint + command
    assert spec["env"] == {"GREETING": "${GREETING:-hello}", "WORKERS": "4", "RATIO": "1.10", "DEBUG": "true"}
    assert spec["envFrom"] == [{"file": "web.env"}]
    assert spec["dependsOn"] == [{"name": "migrate", "condition": "completed"}]  # db: not converted
    assert spec["restartPolicy"] == "Always"
    assert spec["probes"] == {"readiness": {
        "exec": {"command": [PY, "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/')"]},
        "periodSeconds": 0.2, "timeoutSeconds": 2, "failureThreshold": 5}}
    assert spec["shutdown"] == {"signal": "SIGINT", "timeoutSeconds": 90}
    assert worker["spec"]["replicas"] == 2 and worker["spec"]["restartPolicy"] == "OnFailure"
    assert worker["spec"]["maxRestarts"] == 3
    assert worker["spec"]["resources"] == {"limits": {"memory": "512Mi", "cpu": "0.5", "openFiles": 1024}}
    assert smoke["spec"]["restartPolicy"] == "Never"
    assert smoke["spec"]["dependsOn"] == [{"name": "web", "condition": "ready"}]
    assert smoke["spec"]["restartWithDependency"] is True
    joined = "\n".join(notes)
    for line, setting, message in [
        (line_of(text, "  db:"), "services.db", "not mapped (only an image, no command"),
        (line_of(text, "image:", "  web:"), "services.web.image", "not mapped (orchestrator runs programs on this host"),
        (line_of(text, "ports:", "  web:"), "services.web.ports", "not mapped (orchestrator does not publish ports"),
        (line_of(text, "volumes:"), "services.web.volumes", "not mapped (processes use this host's files"),
        (line_of(text, "db:", "depends_on"), "services.web.depends_on.db", "not mapped ('db' is not converted"),
        (line_of(text, "start_period"), "services.web.healthcheck.start_period", "nothing to write"),
        (line_of(text, "build:"), "services.worker.build", "not mapped (orchestrator builds nothing"),
        (line_of(text, "restart: on-failure"), "services.worker.restart", "at most 3 restarts"),
        (line_of(text, "placement"), "services.worker.deploy.placement", "not mapped ("),
        (line_of(text, "x-python"), "x-python", "not mapped (an extension field"),
        (line_of(text, "name: Shop_App"), "name", "namespace 'Shop_App' written as 'shop-app'"),
    ]:
        expected = f"docker-compose.yml:{line}: {setting}: {message}"
        assert expected in joined, f"{expected!r} not in:\n{joined}"
    assert len(notes) == 12, joined  # those and migrate's image; ${GREETING:-hello} has its default
    out = tmp_path / "out.yaml"
    out.write_text(cli("convert", "docker-compose.yml", cwd=tmp_path).stdout)
    valid(out, tmp_path)


def test_compose_manifests_run_in_dependency_order(tmp_path: Path) -> None:
    """migrate (a Job) writes a file, web serves it once migrate completed and is ready when its health
    check passes, smoke waits for that and fetches the file: its exit code is the run's."""
    (tmp_path / "compose.yaml").write_text(compose_file(free_port()))
    (tmp_path / "web.env").write_text("LOG_LEVEL=info\n")
    out = tmp_path / "manifests"
    out.mkdir()
    result = cli("convert", "compose.yaml", "--output-file", str(out / "shop.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all((out / "shop.yaml").read_text()) if d["metadata"]["name"] != "worker"]
    (out / "shop.yaml").write_text(yaml.safe_dump_all(documents))  # worker would run until stopped
    result = run_until(out, "smoke", tmp_path / "state", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "migrated.txt").read_text() == "ok"


def test_compose_names_are_sanitised_once_each_and_dependencies_follow_them(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("""\
services:
  Web_App:
    command: ["sleep", "1"]
  web.app:
    command: sleep 1
    depends_on: [Web_App]
""")
    documents, notes = converted(tmp_path, "compose.yaml")
    assert list(documents) == ["web-app", "web-app-2"]
    assert documents["web-app-2"]["spec"]["dependsOn"] == [{"name": "web-app", "condition": "started"}]
    assert "compose.yaml:2: services.Web_App: name 'Web_App' written as 'web-app'" in "\n".join(notes)
    assert "compose.yaml:4: services.web.app: 'web-app' is already the name of 'Web_App': written as 'web-app-2'" \
        in "\n".join(notes)


# --- supervisord ------------------------------------------------------------------------------------------------

SUPERVISORD = f"""\
; the shop, under supervisord
[unix_http_server]
file=/tmp/supervisor.sock

[supervisord]
logfile=/tmp/supervisord.log
environment=APP_ENV="production"

[program:writer]
command={PY} writer.py %(process_num)02d %(program_name)s
directory=%(here)s
numprocs=2
process_name=%(program_name)s_%(process_num)02d
environment=GREETING="hello, world",MODE=batch,WHERE=%(ENV_HOME)s
autorestart=false
startsecs=0
priority=10
stdout_logfile=/var/log/writer.log

[program:check]
command={PY} check.py
directory=%(here)s
autorestart=unexpected
exitcodes=0,2
stopsignal=INT
stopwaitsecs=5
priority=20
stopasgroup=false
user=nobody

[group:shop]
programs=writer,check
"""

WRITER = """\
import os, sys
with open(f"out-{sys.argv[1]}.txt", "w") as out:
    out.write(f"{os.environ['GREETING']} from {sys.argv[2]} in {os.environ['APP_ENV']}")
"""

CHECK = """\
import sys, time
deadline = time.monotonic() + 30
wanted = {"out-00.txt", "out-01.txt"}
while time.monotonic() < deadline:
    try:
        if all(open(name).read() == "hello, world from writer in production" for name in wanted):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
"""


def test_supervisord_programs_map_and_run(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text(SUPERVISORD)
    (tmp_path / "writer.py").write_text(WRITER)
    (tmp_path / "check.py").write_text(CHECK)
    documents, notes = converted(tmp_path, "supervisord.conf")
    writer, check = documents["writer"]["spec"], documents["check"]["spec"]
    # A pool whose command uses process_num: sh gives each replica its own number, formatted as %02d.
    assert writer["command"] == f"exec {PY} writer.py \"$(printf '%02d' $ORCH_REPLICA)\" writer"
    assert writer["shell"] is True and writer["replicas"] == 2
    assert writer["workingDir"] == str(tmp_path)
    # %(ENV_X)s is supervisord's environment when it reads the file: the loader's ${X}, read when applied.
    assert writer["env"] == {"APP_ENV": "production", "GREETING": "hello, world", "MODE": "batch",
                             "WHERE": "${HOME}"}
    assert writer["restartPolicy"] == "Never"
    assert check["command"] == [PY, "check.py"]
    assert check["restartPolicy"] == "OnFailure" and check["successExitCodes"] == [0, 2]
    assert check["shutdown"] == {"signal": "SIGINT", "timeoutSeconds": 5}
    assert check["user"] == "nobody"
    assert writer["priority"] > check["priority"]  # supervisord starts lower numbers first
    assert documents["writer"]["metadata"]["labels"] == {"group": "shop"}
    text = "\n".join(notes)
    for line, setting in [(2, "[unix_http_server]: not mapped"), (6, "[supervisord] logfile: not mapped"),
                          (13, "[program:writer] process_name: not mapped"),
                          (18, "[program:writer] stdout_logfile: not mapped"),
                          (28, "[program:check] stopasgroup: not mapped (orchestrator always signals the whole")]:
        assert f"supervisord.conf:{line}: {setting}" in text, text
    out = tmp_path / "manifests.yaml"
    out.write_text(cli("convert", "supervisord.conf", cwd=tmp_path).stdout.replace("  user: nobody\n", ""))
    valid(out, tmp_path)
    result = run_until(out, "check", tmp_path / "state", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.glob("out-*.txt")) == ["out-00.txt", "out-01.txt"]


# --- PM2 --------------------------------------------------------------------------------------------------------

ECOSYSTEM = f"""\
// PM2 ecosystem of the shop
'use strict';
module.exports = {{
  apps: [
    {{
      name: "API_Server",
      script: "./server.js",
      args: "--port 3000",
      cwd: "./api",
      instances: 4,
      exec_mode: "cluster",
      env: {{ NODE_ENV: "production", PORT: 3000, TRACE: false }},
      env_staging: {{ NODE_ENV: "staging" }},
      max_restarts: 10,
      min_uptime: "5s",
      restart_delay: 2500,
      kill_timeout: 3000,
      max_memory_restart: "300M",
      watch: true,
      out_file: "/var/log/api.out.log",
    }},
    {{
      name: 'task',
      script: 'task.py',
      interpreter: '{PY}',
      args: ['--out', "pm2.txt", `${{literal}}`, "$(ORCH_REPLICA)"],
      autorestart: false, /* runs once */
      env: {{ COUNT: 3 }},
    }},
  ],
  deploy: {{ production: {{ user: "node" }} }},
}};
"""


def test_pm2_ecosystem_js_is_read_as_data_mapped_and_run(tmp_path: Path) -> None:
    (tmp_path / "ecosystem.config.js").write_text(ECOSYSTEM.replace("`${literal}`", "'$${literal}'"))
    (tmp_path / "task.py").write_text("import os, sys\nopen(sys.argv[2], 'w').write(' '.join([os.environ['COUNT'], "
                                      "*sys.argv[3:]]))\n")
    documents, notes = converted(tmp_path, "ecosystem.config.js")
    api, task = documents["api-server"]["spec"], documents["task"]["spec"]
    assert api["command"] == ["node", "./server.js", "--port", "3000"]
    assert api["workingDir"] == "./api" and api["replicas"] == 4
    assert api["env"] == {"NODE_ENV": "production", "PORT": "3000", "TRACE": "false"}
    assert api["restartPolicy"] == "Always" and api["maxRestarts"] == 10
    assert api["backoff"] == {"initialSeconds": 2.5, "maxSeconds": 2.5, "multiplier": 1, "resetAfterSeconds": 5}
    assert api["shutdown"] == {"timeoutSeconds": 3}
    assert api["resources"] == {"limits": {"memory": "300Mi"}}
    # Text as written: not for the loader's ${...} (read when applied) nor $(...) (expanded per replica).
    assert task["command"] == [PY, "task.py", "--out", "pm2.txt", "$$${literal}", "$$(ORCH_REPLICA)"]
    assert task["restartPolicy"] == "Never" and task["env"] == {"COUNT": "3"}
    text = "\n".join(notes)
    source = ECOSYSTEM
    for key, message in [("exec_mode", "not mapped (no Node.js cluster"),
                         ("env_staging", "not mapped (PM2's --env staging overlay"),
                         ("watch", "not mapped (orchestrator does not restart on file changes"),
                         ("out_file", "not mapped (")]:
        assert f"ecosystem.config.js:{line_of(source, key)}: apps[0].{key}: {message}" in text, text
    assert f"ecosystem.config.js:{line_of(source, 'deploy')}: deploy: not mapped" in text
    assert text.count("env_staging") == 1
    out = tmp_path / "pm2.yaml"
    out.write_text(cli("convert", "ecosystem.config.js", cwd=tmp_path).stdout)
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d["metadata"]["name"] == "task"]
    out.write_text(yaml.safe_dump(docs[0]))  # api-server needs node and runs until stopped
    valid(out, tmp_path)
    result = run_until(out, "task", tmp_path / "state", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "pm2.txt").read_text() == "3 $${literal} $(ORCH_REPLICA)"


@pytest.mark.parametrize("name, text", [
    ("ecosystem.config.json", '{"apps": [{"name": "web", "script": "app.js", "instances": 2, "env": {"A": 1}}]}'),
    ("ecosystem.yaml", "apps:\n  - name: web\n    script: app.js\n    instances: 2\n    env: {A: 1}\n"),
    ("process.json", '[{"name": "web", "script": "app.js", "instances": 2, "env": {"A": 1}}]'),
])
def test_pm2_json_and_yaml_forms(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    documents, _ = converted(tmp_path, name)
    assert documents["web"]["spec"]["command"] == ["node", "app.js"]
    assert documents["web"]["spec"]["replicas"] == 2 and documents["web"]["spec"]["env"] == {"A": "1"}


def test_pm2_code_is_refused_at_its_place_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "ecosystem.config.js").write_text(
        "module.exports = {\n  apps: [{\n    name: 'x',\n"
        f"    script: require('child_process').execSync('touch {marker}').toString(),\n  }}],\n}};\n")
    result = cli("convert", "ecosystem.config.js", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("ecosystem.config.js:4:13: `require(")
    assert "runs no JavaScript" in result.stderr and result.stdout == ""
    assert not marker.exists()


# --- broken, hostile and wrong inputs ---------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


@pytest.mark.parametrize("name, text, args, message", [
    ("Procfile", "", (), "Procfile: empty: no `name: command` lines"),
    ("compose.yaml", "", (), "compose.yaml: empty: no Compose document"),
    ("supervisord.conf", "", (), "supervisord.conf: empty: no [program:NAME] sections"),
    ("ecosystem.config.js", "", (), "ecosystem.config.js: empty: no apps"),
    ("compose.yaml", "services:\n  web: [1\n", (), "compose.yaml:3:1: invalid YAML"),
    ("compose.yaml", "services:\n  web:\n    command: !!python/object:os.system echo\n", (),
     "compose.yaml:3:14: services.web.command: unsupported YAML tag '!!python/object:os.system'"),
    ("compose.yaml", "services:\n  web:\n    command: 'echo \"unclosed'\n", (),
     "compose.yaml:3:5: services.web.command: cannot split this into words as a shell would"),
    ("compose.yaml", BOMB, (), "an alias bomb?"),
    ("ecosystem.config.js", "module.exports = {apps: [{name: 'a', script: 'a.js'}", (),
     "ecosystem.config.js:1:53: the file ends inside a list: a `]` is missing"),
    ("ecosystem.json", '{"apps": [{"name": "a", "script": `${process.env.X}`}]}', ("--from", "pm2"),
     "a template with ${...} is JavaScript to run"),
    ("supervisord.conf", "[program:web]\ncommand=a\n[program:web]\ncommand=b\n", (),
     "supervisord.conf:3:1: [program:web]: section [program:web] already begins at line 1"),
    ("Procfile", "web: python3 app.py\n", ("--from", "compose"), "not a Compose file"),
    ("Procfile", "web: python3 app.py\n", ("--from", "supervisord"), "a setting before any [section]"),
    ("Procfile", "web: python3 app.py\n", ("--from", "pm2"), "not a PM2 ecosystem file"),
    ("docker-compose.yml", "services:\n  web:\n    command: x\n", ("--from", "procfile"),
     "docker-compose.yml:2:1: not a Procfile line"),
    ("compose.yaml", "services:\n  db:\n    image: postgres\n", (), "nothing to convert"),
    ("Procfile", "\udcff", (), "not UTF-8 text"),
])
def test_broken_inputs_are_located_errors_exit_1(tmp_path: Path, name: str, text: str, args: tuple[str, ...],
                                                 message: str) -> None:
    (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    result = cli("convert", name, *args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_large_file_and_a_fifo_are_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: sleep 1\n" * 200)
    result = cli("convert", "Procfile", cwd=tmp_path, env={"ORCHESTRATOR_MANIFEST_MAX_BYTES": "1000"})
    assert result.returncode == 1 and "larger than 1,000 bytes: refused" in result.stderr
    os.mkfifo(tmp_path / "compose.yaml")
    result = cli("convert", "compose.yaml", cwd=tmp_path)  # would block forever if it were opened to read
    assert result.returncode == 1 and "a named pipe (FIFO), not a file: not read" in result.stderr


@pytest.mark.parametrize("args, message", [
    (("notes.txt",), "cannot tell what notes.txt is from its name: give --from"),
    (("-",), "reading standard input: say what it is with --from"),
    (("Procfile", "-f", "Procfile"), "name one file to convert"),
    ((), "name one file to convert"),
    (("Procfile", "--namespace", "Not_Valid"), "--namespace 'Not_Valid': a namespace is"),
    (("Procfile", "--output-file", "Procfile"), "it exists (give --force to replace it)"),
    (("Procfile", "--from", "heroku"), "invalid choice: 'heroku'"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "Procfile").write_text("web: sleep 1\n")
    (tmp_path / "notes.txt").write_text("web: sleep 1\n")
    result = cli("convert", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_standard_input_and_a_namespace(tmp_path: Path) -> None:
    result = subprocess.run([*CLI, "convert", "-", "--from", "procfile", "-n", "shop"], input="web: sleep 1\n",
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    (document,) = yaml.safe_load_all(result.stdout)
    assert document["metadata"] == {"name": "web", "namespace": "shop"}
    assert result.stderr == "converted <stdin> (procfile): 1 object, 0 note(s)\n"


def test_help_says_what_convert_does() -> None:
    result = subprocess.run([*CLI, "convert", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "--from" in result.stdout and "not mapped" in result.stdout


# --- the pure pieces --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file, text, form", [
    ("Procfile", None, "procfile"), ("app/Procfile.dev", None, "procfile"),
    ("docker-compose.yml", None, "compose"), ("compose.override.yaml", None, "compose"),
    ("supervisord.conf", None, "supervisord"), ("conf.d/web.conf", "[program:web]\n", "supervisord"),
    ("conf.d/nginx.conf", "server {}", None), ("ecosystem.config.js", None, "pm2"),
    ("ecosystem.config.cjs", None, "pm2"), ("ecosystem.json", None, "pm2"), ("pm2.yaml", None, "pm2"),
    ("README.md", None, None),
])
def test_detect_by_name(file: str, text: str | None, form: str | None) -> None:
    assert detect(file, text) == form


@pytest.mark.parametrize("given, unit, seconds", [
    ("30s", 1.0, 30), ("1m30s", 1.0, 90), ("500ms", 1.0, 0.5), ("1h", 1.0, 3600), ("2.5s", 1.0, 2.5),
    (10, 1.0, 10), ("10", 1.0, 10), (2500, 0.001, 2.5), ("5s", 0.001, 5), ("soon", 1.0, None), ("1x", 1.0, None),
    ("", 1.0, None), (True, 1.0, None), ("1m" * 40, 1.0, None),
])
def test_durations(given: object, unit: float, seconds: float | None) -> None:
    assert duration(given, unit) == seconds


@pytest.mark.parametrize("given, written", [
    ("512m", "512Mi"), ("1g", "1Gi"), ("50MB", "50Mi"), ("300M", "300Mi"), ("200K", "200Ki"), (1048576, 1048576),
    ("1024", 1024), ("lots", None), ("0m", None), (0, None), (True, None),
])
def test_sizes(given: object, written: object) -> None:
    assert size(given) == written


@pytest.mark.parametrize("given, name", [
    ("TERM", "SIGTERM"), ("SIGINT", "SIGINT"), ("quit", "SIGQUIT"), ("15", "SIGTERM"), (9, "SIGKILL"),
    ("WINCH", None), ("SIGSTOP", None), (None, None),
])
def test_signals(given: object, name: str | None) -> None:
    assert signal_name(given) == name


@pytest.mark.parametrize("line, words", [
    ("python3 app.py --port 8000", ["python3", "app.py", "--port", "8000"]),
    ("python3 -c 'print(1)'", None),  # `(`: a shell would read it the same, but it is shell syntax
    ("gunicorn 'app:create()' -w 4", None),
    ("bundle exec puma -C config/puma.rb", ["bundle", "exec", "puma", "-C", "config/puma.rb"]),
    ("node server.js \"two words\"", ["node", "server.js", "two words"]),
    ("python3 -m http.server $PORT", None), ("cd web && npm start", None), ("FOO=1 node app.js", None),
    ("exec node app.js", None), ("ls *.txt", None), ("node app.js > out.log", None), ("echo 'unclosed", None),
])
def test_which_command_lines_need_a_shell(line: str, words: list[str] | None) -> None:
    assert plain_words(line) == words


@pytest.mark.parametrize("raw, name", [
    ("web", "web"), ("Web_App", "web-app"), ("--web--", "web"), ("web.app.1", "web-app-1"), ("___", "app"),
    ("x" * 80, "x" * 63), ("ünïcode", "n-code"),
])
def test_names_sanitised(raw: str, name: str) -> None:
    assert sanitised(raw) == name


@pytest.mark.parametrize("text, value", [
    ("module.exports = {apps: [{name: 'a', 'script': \"b.js\", n: -1.5e1, h: 0x1F, t: true, z: null,},],};",
     {"apps": [{"name": "a", "script": "b.js", "n": -15.0, "h": 31, "t": True, "z": None}]}),
    ("/* c */ module.exports = { // c\n a: `tpl`, b: 'it\\'s \\u00e9\\x41', c: [1, 2,], }",
     {"a": "tpl", "b": "it's éA", "c": [1, 2]}),
    ("export default {a: 1}", {"a": 1}),
])
def test_js_literals_read_as_data(text: str, value: object) -> None:
    doc, skipped = read_module(text, "e.js", ReadLimits())
    assert doc.value == value and skipped == []


@pytest.mark.parametrize("text, column", [
    ("module.exports = {a: process.env.A}", 22), ("module.exports = {a: 1 + 2}", 22),
    ("module.exports = {a: 'x' + y}", 22), ("module.exports = {a}", 20), ("module.exports = {...base}", 19),
    ("module.exports = {[key]: 1}", 19), ("module.exports = {a: () => 1}", 22),
    ("module.exports = {a: `${b}`}", 23), ("module.exports = {a: 1, a: 2}", 25),
    ("module.exports = [,]", 19), ("module.exports = {a: 1}\nmodule.exports = {}", 1),
])
def test_js_code_is_refused_where_it_is(text: str, column: int) -> None:
    with pytest.raises(NotData) as refused:
        read_module(text, "e.js", ReadLimits())
    assert refused.value.problem.location.column == column, refused.value.problem


def test_a_document_the_schema_refuses_is_dropped_with_a_note() -> None:
    """The last check of every conversion: what is written always validates."""
    found = Collector("x.conf")
    conversion = found.finish([document("Process", "ok", {"command": ["true"]}),
                               document("Process", "bad", {"command": ["true"], "replicas": -1})])
    assert [d["metadata"]["name"] for d in conversion.documents] == ["ok"]
    assert [str(n) for n in conversion.notes] == [
        "x.conf: bad: not converted: the manifest would not be valid (spec.replicas: -1 is less than the minimum of 0)"]


def test_js_around_the_literal_is_reported_not_run() -> None:
    text = "const x = 1;\nmodule.exports = {a: 1};\nmodule.exports.apps = [];\n"
    doc, skipped = read_module(text, "e.js", ReadLimits())
    assert doc.value == {"a": 1}
    assert skipped == ["the code before module.exports, on line 1", "the code after the exported object, from line 3"]
    assert doc.key_at(("a",)) == Location("e.js", 2, 19)
