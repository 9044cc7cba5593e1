"""A PM2 ecosystem file (ecosystem.config.js, .json or .yaml) as orchestrator manifests.

Each app is a Process. The .js form is read as data by jsliteral (the literal `module.exports` is set to,
never run: a file that computes its settings is refused at the code, with the way to export it as JSON);
.json by the same reader, .yaml and .yml by the manifests' own bounded YAML reader. A file may hold
`{apps: [...]}`, a list of apps or one app.

The program is what PM2 would start: `interpreter` (with `interpreter_args` or `node_args`) and `script`,
then `args`. Without an interpreter PM2 picks one by the script's extension (.js: node, .py: python3 here,
where PM2 says python, .sh: bash, .rb: ruby, .php: php, .pl: perl, .ts: ts-node); anything else (a binary,
`npm`) is run directly, as with `interpreter: none`. PM2's times are milliseconds: they are written as
seconds.

Mapped: name, script, args, interpreter, interpreter_args, node_args, cwd, env, instances (replicas),
exec_mode fork, autorestart, stop_exit_codes, max_restarts, min_uptime (a run that long resets the
backoff), restart_delay (a fixed delay), exp_backoff_restart_delay, kill_timeout, max_memory_restart (a
memory limit: the replica is killed and restarted as its policy says) and namespace.
"""

from __future__ import annotations

import os
from typing import Any

from ...core.errors import Location
from ..documents import Document, parse_documents
from .jsliteral import NotData, read_json, read_module
from .result import Collector, Conversion, Fields, JSONDict, KeyPath, Options, document
from .values import command_words, duration, is_env_name, literal, seconds, size, text_of, whole

_INTERPRETERS = {".js": "node", ".cjs": "node", ".mjs": "node", ".py": "python3", ".sh": "bash", ".rb": "ruby",
                 ".php": "php", ".pl": "perl", ".ts": "ts-node", ".coffee": "coffee"}
_LOGS = "each replica's output goes to its log file in the state dir: `orchestrator logs`"
_WATCH = "orchestrator does not restart on file changes: `apply --watch` re-applies changed manifests"
_REASONS = {
    "watch": _WATCH, "ignore_watch": _WATCH, "watch_options": _WATCH, "watch_delay": _WATCH,
    "log_file": _LOGS, "out_file": _LOGS, "error_file": _LOGS, "output": _LOGS, "error": _LOGS, "log": _LOGS,
    "merge_logs": _LOGS, "combine_logs": _LOGS, "log_date_format": _LOGS, "log_type": _LOGS,
    "disable_logs": _LOGS, "pid_file": "orchestrator keeps pids in its state dir (`orchestrator get -o wide`)",
    "cron_restart": "no restarts on a schedule here",
    "wait_ready": "no process.send('ready'): give a readiness probe (http, tcp, log or exec)",
    "listen_timeout": "no process.send('ready'): give a readiness probe (http, tcp, log or exec)",
    "shutdown_with_message": "stopping is a signal (shutdown.signal)",
    "instance_var": "each replica's number is in ORCH_REPLICA",
    "increment_var": "each replica's number is in ORCH_REPLICA: derive the value from it",
    "source_map_support": "a Node.js setting: give it in node_args", "vizion": "no version metadata here",
    "automation": "a PM2 setting", "pmx": "a PM2 setting", "treekill": "orchestrator always stops the whole tree",
    "force": "an app is defined once, by its name",
}


def convert(text: str, file: str, options: Options) -> Conversion:
    found = Collector(file)
    try:
        doc = _read(text, file, options, found)
    except NotData as error:
        found.problems.append(error.problem)
        return found.finish([])
    if doc is None:
        return found.finish([])
    value = _literal(doc.value)
    apps: Any = value
    prefix: KeyPath = ()
    if isinstance(value, dict) and "apps" in value:
        top = Fields(value, (), doc.key_at)
        apps, prefix = top.take("apps"), ("apps",)
        top.report(found, {"deploy": "orchestrator does not deploy code: check out and build it, then apply"},
                   "a PM2 setting with no equivalent in orchestrator")
    if not isinstance(apps, (list, dict)) or not apps or (isinstance(apps, dict) and "script" not in apps):
        found.problem(doc.at(prefix), "", "no apps: expected {apps: [{name, script, ...}]}, a list of apps or one "
                      "app (not a PM2 ecosystem file?)")
        return found.finish([])
    listed: list[tuple[KeyPath, Any]] = ([(prefix + (i,), app) for i, app in enumerate(apps)]
                                         if isinstance(apps, list) else [(prefix, apps)])
    documents = []
    for path, app in listed:
        if not isinstance(app, dict):
            found.problem(doc.at(path), path, "an app must be an object of its settings")
            continue
        written = _App(doc, found, Fields(app, path, doc.key_at), options).document()
        if written is not None:
            documents.append(written)
    return found.finish(documents)


def _literal(value: Any) -> Any:
    """Every string of the file as text that means itself in a manifest (a `${` is not for the loader)."""
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item) for item in value]
    return value


def _read(text: str, file: str, options: Options, found: Collector) -> Document | None:
    lower = file.lower()
    if not text.strip():
        found.problem(Location(file), "", "empty: no apps to convert")
        return None
    if lower.endswith((".yaml", ".yml")):
        documents, problems = parse_documents(file, text, options.limits)
        found.problems += problems
        if not problems and len(documents) != 1:
            found.problem(Location(file), "", f"{len(documents)} YAML documents: an ecosystem file holds one")
        return documents[0] if documents and not found.problems else None
    if lower.endswith(".json"):
        return read_json(text, file, options.limits)
    doc, skipped = read_module(text, file, options.limits)
    for part in skipped:
        found.note(Location(file), "", f"not run: {part} (only the exported object is read)")
    return doc


class _App:
    def __init__(self, doc: Document, found: Collector, app: Fields, options: Options) -> None:
        self.doc, self.found, self.app, self.options = doc, found, app, options

    def unmapped(self, key: str, reason: str) -> None:
        self.found.unmapped(self.app.at(key), self.app.place(key), reason)

    def document(self) -> JSONDict | None:
        app = self.app
        script = app.take("script")
        if not isinstance(script, str) or not script:
            self.found.unmapped(app.at(), app.path or "app", "no script: PM2 would refuse it too")
            return None
        raw = app.take("name")
        if raw is not None and not isinstance(raw, str):
            self.unmapped("name", "expected a string")
            raw = None
        raw = raw or os.path.splitext(os.path.basename(script))[0] or "app"
        name = self.found.name(raw, app.at("name" if "name" in app else None), app.place("name"))
        spec: JSONDict = {"command": self.argv(script)}
        folder = app.take("cwd")
        if isinstance(folder, str) and folder:
            spec["workingDir"] = folder
        elif folder is not None:
            self.unmapped("cwd", "expected a path")
        env = self.environment()
        if env:
            spec["env"] = env
        self.instances(spec)
        self.restarts(spec)
        self.limits(spec)
        namespace = self.options.namespace
        given = app.take("namespace")
        if namespace is None and isinstance(given, str) and given and given != "default":
            namespace = self.found.namespace(given, app.at("namespace"), app.place("namespace"))
        for key in list(app.rest()):
            if key.startswith("env_"):
                self.unmapped(key, f"PM2's --env {key[4:]} overlay: merge what you need into env")
                app.take(key)
        app.report(self.found, _REASONS, "a PM2 setting with no equivalent in orchestrator")
        return document("Process", name, spec, namespace)

    def words(self, key: str) -> list[str]:
        path = self.app.place(key)
        found, wrong = command_words(self.app.take(key), self.doc.raws, path)
        if wrong:
            self.found.problem(self.app.at(key), path, wrong)
        return found

    def argv(self, script: str) -> list[str]:
        interpreter = self.app.take("interpreter")
        if interpreter is None:
            interpreter = self.app.take("exec_interpreter")
        elif "exec_interpreter" in self.app:
            self.app.take("exec_interpreter")
            self.unmapped("exec_interpreter", "interpreter is used")
        if interpreter is not None and not isinstance(interpreter, str):
            self.unmapped("interpreter", "expected a program name, or none")
            interpreter = None
        if interpreter is None:
            interpreter = _INTERPRETERS.get(os.path.splitext(script)[1].lower(), "none")
        options = self.words("interpreter_args") + self.words("node_args")
        args = self.words("args")
        if interpreter == "none":
            if options:
                self.found.note(self.app.at(), self.app.path or "app", "interpreter arguments without an "
                                "interpreter: not mapped")
            return [script, *args]
        return [interpreter, *options, script, *args]

    def environment(self) -> dict[str, str]:
        value = self.app.take("env")
        path = self.app.place("env")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.unmapped("env", "expected an object of NAME: value")
            return {}
        env = {}
        for key, item in value.items():
            where = path + (key,)
            text = text_of(item, self.doc.raws.get(where))
            if not is_env_name(key):
                self.found.unmapped(self.doc.key_at(where), where, f"{key!r} is not a variable name orchestrator "
                                    "can set")
            elif text is None:
                self.found.unmapped(self.doc.key_at(where), where, "the value must be a string, a number or a boolean")
            else:
                env[key] = text
        return env

    def instances(self, spec: JSONDict) -> None:
        app = self.app
        if "instances" in app:
            given = app.take("instances")
            count = whole(given)
            if count is not None and 1 <= count <= 10000:
                spec["replicas"] = count
            elif given == "max" or count in (0, -1):
                self.unmapped("instances", "one per CPU is decided where PM2 runs: write this host's number as "
                              "replicas (1 here)")
            else:
                self.unmapped("instances", "expected a whole number from 1 to 10000")
        mode = app.take("exec_mode")
        if mode in ("cluster", "cluster_mode"):
            self.unmapped("exec_mode", "no Node.js cluster: replicas are separate processes, so each needs a port "
                          "of its own, from ORCH_REPLICA, or a listener that reuses the port")
        elif mode not in (None, "fork", "fork_mode"):
            self.unmapped("exec_mode", f"unknown mode {mode!r}")

    def restarts(self, spec: JSONDict) -> None:
        app = self.app
        restart = app.take("autorestart")
        spec["restartPolicy"] = "Never" if restart is False else "Always"
        if restart not in (None, True, False):
            self.unmapped("autorestart", "expected true or false")
        if "stop_exit_codes" in app:
            given = app.take("stop_exit_codes")
            codes = [whole(c) for c in (given if isinstance(given, list) else [given])]
            if not codes or any(c is None or not 0 <= c <= 255 for c in codes):
                self.unmapped("stop_exit_codes", "expected exit codes 0..255")
            elif restart is not False:
                spec["restartPolicy"] = "OnFailure"
                spec["successExitCodes"] = list(dict.fromkeys(c for c in codes if c is not None))
        if "max_restarts" in app:
            limit = whole(app.take("max_restarts"))
            if limit is None or limit < 0:
                self.unmapped("max_restarts", "expected a whole number")
            else:
                spec["maxRestarts"] = limit
                self.found.note(app.at("max_restarts"), app.place("max_restarts"), "counted within "
                                "restartWindowSeconds (60 s) here; PM2 counts restarts of runs shorter than min_uptime")
        backoff: JSONDict = {}
        for key in ("restart_delay", "exp_backoff_restart_delay"):
            if key in app:
                delay = duration(app.take(key), bare_unit=0.001)
                if delay is None or delay < 0:
                    self.unmapped(key, "expected milliseconds")
                elif key == "restart_delay":
                    backoff.update(initialSeconds=seconds(delay), maxSeconds=seconds(delay), multiplier=1)
                else:  # PM2 grows it by half each time, up to 15 s
                    backoff.update(initialSeconds=seconds(delay), maxSeconds=max(15, seconds(delay)), multiplier=1.5)
        if "min_uptime" in app:
            uptime = duration(app.take("min_uptime"), bare_unit=0.001)
            if uptime is None or uptime < 0:
                self.unmapped("min_uptime", "expected milliseconds, or a time such as 10s")
            else:
                backoff["resetAfterSeconds"] = seconds(uptime)
        if backoff:
            spec["backoff"] = backoff
        if "kill_timeout" in app:
            wait = duration(app.take("kill_timeout"), bare_unit=0.001)
            if wait is None or wait < 0:
                self.unmapped("kill_timeout", "expected milliseconds")
            else:
                spec["shutdown"] = {"timeoutSeconds": seconds(wait)}

    def limits(self, spec: JSONDict) -> None:
        if "max_memory_restart" not in self.app:
            return
        memory = size(self.app.take("max_memory_restart"))
        if memory is None:
            self.unmapped("max_memory_restart", "expected a size such as 300M or 1G")
        else:
            spec["resources"] = {"limits": {"memory": memory}}

