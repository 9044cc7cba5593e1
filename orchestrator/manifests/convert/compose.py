"""A Compose file (docker-compose.yml, compose.yaml) as orchestrator manifests: the parts of a service that
say how to run a program, for running it on this host instead of in a container.

A service becomes a Process, or a Job when another service waits for it with
`condition: service_completed_successfully` (a migration step). Its program is `entrypoint` followed by
`command`; Compose splits a string form of either into words itself, without a shell, and so does this.
A service with only an `image` (or `build`) and no command cannot be mapped: what it runs is inside the
image; it is left out with a note, and so are the dependencies on it.

Mapped: command, entrypoint, environment, env_file, depends_on (conditions service_started, service_healthy
and service_completed_successfully -> started, ready, completed; `restart: true` -> restartWithDependency),
healthcheck (-> a readiness probe, with Docker's defaults written out), restart and deploy.restart_policy,
deploy.replicas and scale, deploy.resources.limits, mem_limit, cpus, cpuset, ulimits nofile and nproc,
working_dir, user, stop_grace_period, stop_signal, labels, and the project `name` as the namespace.
Compose's interpolation is left to the manifest loader, which follows Compose's rules when the manifests are
applied: `${VAR}`, `${VAR:-default}` and their forms are written as they are, `$VAR` as `${VAR}`, `$$` as a
`$` (and a text `${` as the loader's `$${`); the file is never read with this host's environment.
"""

from __future__ import annotations

import re
from typing import Any

from ...core.errors import Location
from ..documents import Document, parse_documents
from .compose_interpolation import rewrite_interpolation
from .result import Collector, Conversion, Fields, JSONDict, KeyPath, Options, document, mapping
from .values import command_words, duration, is_env_name, is_label_key, seconds, signal_name, size, text_of, whole

_CONDITIONS = {"service_started": "started", "service_healthy": "ready",
               "service_completed_successfully": "completed"}
_RESTARTS = {"no": "Never", "always": "Always", "unless-stopped": "Always", "on-failure": "OnFailure"}
_DEPLOY_RESTARTS = {"none": "Never", "any": "Always", "on-failure": "OnFailure"}
_MAX_CPUS = 8192  # the kernel's own most (CONFIG_NR_CPUS): a cpuset beyond it is not this host's
# The settings of a service read below: only in these is interpolation worth a note.
_MAPPED = {"command", "entrypoint", "environment", "env_file", "depends_on", "healthcheck", "restart", "deploy",
           "scale", "working_dir", "user", "stop_grace_period", "stop_signal", "labels", "mem_limit", "cpus",
           "cpuset", "ulimits"}

_HOST_NETWORK = "processes share this host's network"
_HOST_FILES = "processes use this host's files as they are"
_CONTAINER = "a container setting: processes run on this host as they are"
_REASONS = {
    "image": "orchestrator runs programs on this host, not images: the command runs as written, without the "
             "image's ENTRYPOINT, CMD or files",
    "build": "orchestrator builds nothing: install or build the program on this host",
    "ports": "orchestrator does not publish ports: the program listens on this host's own",
    "expose": _HOST_NETWORK, "networks": _HOST_NETWORK, "network_mode": _HOST_NETWORK, "links": _HOST_NETWORK,
    "external_links": _HOST_NETWORK, "extra_hosts": _HOST_NETWORK, "dns": _HOST_NETWORK,
    "dns_search": _HOST_NETWORK, "dns_opt": _HOST_NETWORK, "mac_address": _HOST_NETWORK,
    "hostname": _HOST_NETWORK, "domainname": _HOST_NETWORK,
    "volumes": _HOST_FILES, "volumes_from": _HOST_FILES, "tmpfs": _HOST_FILES, "read_only": _HOST_FILES,
    "secrets": "give secrets as files the program reads, or with envFrom",
    "configs": "give configuration as files the program reads",
    "container_name": "the manifest's name is the service's name",
    "logging": "each replica's output goes to its log file (`orchestrator logs`)",
    "tty": "a process's standard input is /dev/null", "stdin_open": "a process's standard input is /dev/null",
    "init": "orchestrator kills and reaps what a replica leaves behind itself",
    "profiles": "every converted service is in the output: leave out those you do not want",
    "extends": "not followed: write the whole service here, then convert",
    "pull_policy": "no images", "platform": "no images",
    "post_start": "no equivalent here: orchestrator's postStart hook is an argv (write it by hand)",
    "pre_stop": "no equivalent here: orchestrator's preStop hook is an argv (write it by hand)",
}
_TOP_REASONS = {
    "version": "obsolete in the Compose Specification",
    "networks": _HOST_NETWORK, "volumes": _HOST_FILES,
    "secrets": "give secrets as files the programs read, or with envFrom",
    "configs": "give configuration as files the programs read",
    "include": "not followed: convert each included file on its own",
}
_SERVICE_OTHERWISE = "no equivalent in orchestrator"


def convert(text: str, file: str, options: Options) -> Conversion:
    found = Collector(file)
    documents, problems = parse_documents(file, text, options.limits)
    found.problems += problems
    if problems:
        return found.finish([])
    if not documents:
        found.problem(Location(file), "", "empty: no Compose document to convert")
        return found.finish([])
    if len(documents) > 1:
        found.problem(documents[1].at(()), "", f"{len(documents)} YAML documents: a Compose file holds one")
        return found.finish([])
    doc = documents[0]
    top = mapping(doc.value)
    services = mapping(top.get("services")) if top is not None else None
    if top is None or services is None:
        found.problem(doc.at(("services",)), "", "not a Compose file: expected a mapping with `services:`")
        return found.finish([])
    return _Converter(doc, found, options).run(top, services)


class _Converter:
    def __init__(self, doc: Document, found: Collector, options: Options) -> None:
        self.doc, self.found, self.options = doc, found, options
        self.names: dict[str, str] = {}  # service -> manifest name, for the services that can be mapped
        self.jobs: set[str] = set()

    def at(self, path: KeyPath) -> Location:
        return self.doc.key_at(path)

    def fields(self, value: dict[str, Any], path: KeyPath) -> Fields:
        return Fields(value, path, self.at)

    def section(self, outer: Fields, key: str) -> Fields:
        """The mapping `outer` holds at `key` (empty when it has none), taken; any other value is noted."""
        value = outer.take(key)
        if value is not None and not isinstance(value, dict):
            self.found.unmapped(outer.at(key), outer.place(key), "expected a mapping")
        return self.fields(value if isinstance(value, dict) else {}, outer.place(key))

    def run(self, top: dict[str, Any], services: dict[str, Any]) -> Conversion:
        outer = self.fields(top, ())
        outer.take("services")
        namespace = self.options.namespace
        project = outer.take("name")
        if namespace is None and isinstance(project, str) and project:
            namespace = self.found.namespace(project, outer.at("name"), ("name",))
        rewrite_interpolation(self.doc, services, _MAPPED, self.found)
        outer.report(self.found, _TOP_REASONS, "a Compose setting with no equivalent in orchestrator")
        bodies: dict[str, dict[str, Any]] = {}
        for service, body in services.items():
            path: KeyPath = ("services", service)
            if not isinstance(body, dict):
                self.found.problem(self.doc.at(path), path, "a service must be a mapping of its settings")
                continue
            if _empty(body.get("command")) and _empty(body.get("entrypoint")):
                what = "an image" if "image" in body else "a build" if "build" in body else "settings"
                self.found.unmapped(self.at(path), path, f"only {what}, no command: orchestrator runs programs on "
                                    "this host; give it a `command:`, or run it some other way")
                continue
            bodies[service] = body
            self.names[service] = self.found.name(service, self.at(path), path)
        for service, body in bodies.items():
            for target, condition, _ in _dependencies(body.get("depends_on")):
                if condition == "service_completed_successfully" and target in self.names:
                    self.jobs.add(target)
        written = [self.service(service, body, namespace) for service, body in bodies.items()]
        return self.found.finish([d for d in written if d is not None])

    def service(self, service: str, body: dict[str, Any], namespace: str | None) -> JSONDict | None:
        path: KeyPath = ("services", service)
        svc = self.fields(body, path)
        job = service in self.jobs
        spec: JSONDict = {}
        argv = self.argv(svc, "entrypoint") + self.argv(svc, "command")
        if not argv:
            self.found.unmapped(self.at(path), path, "entrypoint and command are empty: no program to run")
            return None
        spec["command"] = argv
        if "working_dir" in svc:
            folder = svc.take("working_dir")
            if isinstance(folder, str) and folder:
                spec["workingDir"] = folder
                self.found.note(svc.at("working_dir"), svc.place("working_dir"), "mapped to workingDir: a path in "
                                "the container under Compose, here a path on this host (check it exists)")
            else:
                self.found.unmapped(svc.at("working_dir"), svc.place("working_dir"), "expected a path")
        env = self.environment(svc)
        if env:
            spec["env"] = env
        env_files = self.env_files(svc)
        if env_files:
            spec["envFrom"] = env_files
        user = svc.take("user")
        if isinstance(user, (str, int)) and not isinstance(user, bool) and ":" not in str(user) and str(user):
            spec["user"] = str(user)
        elif user is not None:
            self.found.unmapped(svc.at("user"), svc.place("user"), "give a user name or uid; no group")
        deploy = self.section(svc, "deploy")
        self.replicas(svc, deploy, spec, job)
        self.restart(svc, deploy, spec, job)
        self.resources(svc, deploy, spec)
        listed, restart = self.depends_on(svc, job)
        if listed:
            spec["dependsOn"] = listed
        if restart:
            spec["restartWithDependency"] = True
        self.healthcheck(svc, spec, job)
        self.shutdown(svc, spec)
        labels = self.labels(svc)
        deploy.report(self.found, {"labels": "labels of a swarm service: give them as `labels:`"},
                      "a deploy setting with no equivalent in orchestrator")
        svc.report(self.found, _REASONS, _SERVICE_OTHERWISE)
        return document("Job" if job else "Process", self.names[service], spec, namespace, labels)

    # -- the program and its environment ---------------------------------------------------------------------

    def argv(self, svc: Fields, key: str) -> list[str]:
        path = svc.place(key)
        found, wrong = command_words(svc.take(key), self.doc.raws, path)
        if wrong:
            self.found.problem(svc.at(key), path, wrong)
        return found

    def environment(self, svc: Fields) -> dict[str, str]:
        value = svc.take("environment")
        path = svc.place("environment")
        pairs: list[tuple[str, object, KeyPath]] = []
        if isinstance(value, dict):
            pairs = [(key, item, path + (key,)) for key, item in value.items()]
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    self.found.unmapped(self.doc.at(path + (index,)), path + (index,), "expected NAME=value")
                    continue
                key, equals, rest = item.partition("=")
                pairs.append((key, rest if equals else None, path + (index,)))
        elif value is not None:
            self.found.unmapped(svc.at("environment"), path, "expected a mapping or a list of NAME=value")
        env: dict[str, str] = {}
        for key, item, where in pairs:
            location = self.doc.key_at(where)
            if not is_env_name(key):
                self.found.unmapped(location, where, f"{key!r} is not a variable name orchestrator can set")
            elif item is None:
                env[key] = f"${{{key}-}}"
                self.found.note(location, where, f"no value: Compose passes {key} on from its own environment; "
                                f"written ${{{key}-}}, from the environment of `orchestrator apply` (empty when unset)")
            elif text_of(item) is None:
                self.found.unmapped(location, where, "the value must be a string, a number or a boolean")
            else:
                env[key] = str(text_of(item, self.doc.raws.get(where)))
        return env

    def env_files(self, svc: Fields) -> list[JSONDict]:
        value = svc.take("env_file")
        path = svc.place("env_file")
        items = [value] if isinstance(value, (str, dict)) else value if isinstance(value, list) else []
        if value is not None and not items:
            self.found.unmapped(svc.at("env_file"), path, "expected a path or a list of paths")
        files = []
        for index, item in enumerate(items):
            where: KeyPath = path + (index,) if isinstance(value, list) else path
            entry = self.fields(item, where) if isinstance(item, dict) else None
            name = entry.take("path") if entry is not None else item
            if not isinstance(name, str) or not name:
                self.found.unmapped(self.doc.at(where), where, "expected the path of a dotenv file")
                continue
            files.append({"file": name})
            if entry is not None:
                if entry.take("required") is False:
                    self.found.unmapped(entry.at("required"), entry.place("required"), "the file must exist: "
                                        "orchestrator reads every envFrom file")
                entry.report(self.found, {"format": "files are read as dotenv"}, "no equivalent in orchestrator")
        return files

    # -- how many, how restarted, within which limits ------------------------------------------------------------

    def replicas(self, svc: Fields, deploy: Fields, spec: JSONDict, job: bool) -> None:
        for fields, key in ((deploy, "replicas"), (svc, "scale")):
            if key not in fields:
                continue
            count = whole(fields.take(key))
            if count is None or not 0 <= count <= 10000:
                self.found.unmapped(fields.at(key), fields.place(key), "expected a whole number from 0 to 10000")
            elif job and count != 1:
                self.found.unmapped(fields.at(key), fields.place(key), "a Job runs one process")
            elif not job:
                spec["replicas"] = count
            return

    def restart(self, svc: Fields, deploy: Fields, spec: JSONDict, job: bool) -> None:
        policy, limit = "Never", None  # Compose's default is "no"
        given = svc.take("restart")
        where, path = svc.at("restart"), svc.place("restart")
        rules = self.section(deploy, "restart_policy")
        if given is not None:
            text = "no" if given is False else str(given)
            name, _, count = text.partition(":")
            if name not in _RESTARTS or (count and (name != "on-failure" or whole(count) is None)):
                self.found.unmapped(where, path, f"unknown restart policy {text!r}")
            else:
                policy, limit = _RESTARTS[name], whole(count) if count else None
            if rules.value:
                self.found.unmapped(rules.at(), rules.path, "restart: says how it is restarted")
        elif rules.value:
            condition = rules.take("condition")
            if condition is not None and condition not in _DEPLOY_RESTARTS:
                self.found.unmapped(rules.at("condition"), rules.place("condition"), f"unknown condition {condition!r}")
            policy = _DEPLOY_RESTARTS.get(str(condition), "Always")  # swarm's default is any
            attempts = rules.take("max_attempts")
            limit = whole(attempts) if attempts is not None else None
            delay = duration(rules.take("delay")) if "delay" in rules else None
            if delay is not None and not job:
                spec["backoff"] = {"initialSeconds": seconds(delay), "maxSeconds": seconds(delay), "multiplier": 1}
            rules.report(self.found, {"window": "a restart counts from its start, whatever it does next"},
                         "no equivalent in orchestrator")
        if job:
            if policy == "Always":
                self.found.unmapped(where if given is not None else rules.at(), path, "a Job runs to completion: "
                                    "it is retried only when it fails")
            spec["backoffLimit"] = limit if limit is not None else 0 if policy == "Never" else 6
            if policy != "Never" and limit is None:
                self.found.note(where, path, "Compose retries a failed one without end: backoffLimit 6 here")
            return
        spec["restartPolicy"] = policy
        if limit is not None:
            spec["maxRestarts"] = limit
            self.found.note(where if given is not None else rules.at(), path, f"at most {limit} restarts: counted "
                            "within restartWindowSeconds (60 s) here, not over the whole life of the service")

    def resources(self, svc: Fields, deploy: Fields, spec: JSONDict) -> None:
        limits: JSONDict = {}
        sizes = self.section(deploy, "resources")
        given = self.section(sizes, "limits")
        for fields, memory_key, cpu_key in ((given, "memory", "cpus"), (svc, "mem_limit", "cpus")):
            if memory_key in fields:
                memory = size(fields.take(memory_key))
                if memory is None or "memory" in limits:
                    self.found.unmapped(fields.at(memory_key), fields.place(memory_key), "expected a size such as "
                                        "512m" if memory is None else "deploy.resources.limits.memory is used")
                else:
                    limits["memory"] = memory
            if cpu_key in fields:
                cpus = fields.take(cpu_key)
                amount = cpus if isinstance(cpus, (int, float)) and not isinstance(cpus, bool) else None
                if isinstance(cpus, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", cpus.strip()):
                    amount = float(cpus)
                if not amount or amount <= 0 or "cpu" in limits:
                    self.found.unmapped(fields.at(cpu_key), fields.place(cpu_key), "expected a number of CPUs"
                                        if not amount or amount <= 0 else "deploy.resources.limits.cpus is used")
                else:
                    limits["cpu"] = str(cpus).strip()
        given.report(self.found, {"pids": "give resources.limits.processes by hand: it counts per user"},
                     "no equivalent in orchestrator")
        sizes.report(self.found, {"reservations": "orchestrator reserves nothing"}, "no equivalent in orchestrator")
        for name, limit in self.ulimits(svc).items():
            limits[name] = limit
        if limits:
            spec["resources"] = {"limits": limits}
        if "cpuset" in svc:
            cpus = _cpu_list(svc.take("cpuset"))
            if cpus:
                spec["cpuAffinity"] = cpus
            else:
                self.found.unmapped(svc.at("cpuset"), svc.place("cpuset"), "expected CPUs such as 0-3 or 0,2")

    def ulimits(self, svc: Fields) -> dict[str, int]:
        found: dict[str, int] = {}
        if "ulimits" not in svc:
            return found
        limits = self.section(svc, "ulimits")
        for key, name in (("nofile", "openFiles"), ("nproc", "processes")):
            if key not in limits:
                continue
            value = limits.take(key)
            soft = whole(value.get("soft")) if isinstance(value, dict) else whole(value)
            if soft is None or soft < 1:
                self.found.unmapped(limits.at(key), limits.place(key), "expected a number, or soft and hard")
            else:
                found[name] = soft
                if isinstance(value, dict) and value.get("hard") not in (None, value.get("soft")):
                    self.found.note(limits.at(key), limits.place(key), "the soft limit is set; the hard one is not")
        limits.report(self.found, {}, "orchestrator sets only nofile (openFiles) and nproc (processes)")
        return found

    # -- order, health and stopping ------------------------------------------------------------------------------

    def depends_on(self, svc: Fields, job: bool) -> tuple[list[JSONDict], bool]:
        if "depends_on" not in svc:
            return [], False
        value = svc.take("depends_on")
        path = svc.place("depends_on")
        listed: list[JSONDict] = []
        restart = False
        for target, condition, options in _dependencies(value):
            where: KeyPath = path + (target,) if isinstance(value, dict) else path
            location = self.at(where)
            entry = self.fields(options, where) if options is not None else None
            if entry is not None:
                entry.take("condition")
            if target not in self.names:
                self.found.unmapped(location, where, f"{target!r} is not converted: start it some other way")
            elif condition not in _CONDITIONS:
                self.found.unmapped(location, where, f"unknown condition {condition!r}")
            else:
                listed.append({"name": self.names[target], "condition": _CONDITIONS[condition]})
            if entry is None:
                continue
            if entry.take("restart") is True and target in self.names:
                if job:
                    self.found.unmapped(entry.at("restart"), entry.place("restart"), "a Job is not restarted")
                else:
                    restart = True
            if entry.take("required") is False:
                self.found.unmapped(entry.at("required"), entry.place("required"), "a dependency is always required")
            entry.report(self.found, {}, "no equivalent in orchestrator")
        if value is not None and not isinstance(value, (list, dict)):
            self.found.unmapped(svc.at("depends_on"), path, "expected a list or a mapping of services")
        return listed, restart

    def healthcheck(self, svc: Fields, spec: JSONDict, job: bool) -> None:
        if "healthcheck" not in svc:
            return
        check = self.section(svc, "healthcheck")
        if job:
            self.found.unmapped(check.at(), check.path, "a Job has no probes: it is done when it exits")
            return
        if check.take("disable") is True:
            check.report(self.found, {}, "the health check is disabled")
            return
        test = check.take("test")
        where = check.at("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not isinstance(test, list) or not test or not all(isinstance(word, str) for word in test):
            self.found.unmapped(where, check.place("test"), "expected a list starting with CMD or CMD-SHELL")
            check.report(self.found, {}, "no health check to apply it to")
            return
        if test[0] == "NONE":
            check.report(self.found, {}, "the health check is disabled")
            return
        if test[0] == "CMD" and len(test) > 1:
            argv = test[1:]
        elif test[0] == "CMD-SHELL" and len(test) > 1:
            argv = ["sh", "-c", " ".join(test[1:])]
        else:
            self.found.unmapped(where, check.place("test"), "expected a list starting with CMD or CMD-SHELL")
            check.report(self.found, {}, "no health check to apply it to")
            return
        probe: JSONDict = {"exec": {"command": argv}}
        for key, name, default in (("interval", "periodSeconds", 30.0), ("timeout", "timeoutSeconds", 30.0)):
            given = duration(check.take(key)) if key in check else None
            if key in check and given is None:
                self.found.unmapped(check.at(key), check.place(key), "expected a duration such as 30s or 1m30s")
            probe[name] = seconds(max(given, 0.01) if given else default)  # 0 means Docker's default too
        if "retries" in check:
            retries = whole(check.take("retries"))
            if retries is None or retries < 1:
                self.found.unmapped(check.at("retries"), check.place("retries"), "expected a whole number, 1 or more")
            else:
                probe["failureThreshold"] = retries
        if "start_period" in check:
            check.take("start_period")
            self.found.note(check.at("start_period"), check.place("start_period"), "nothing to write: a readiness "
                            "probe leaves the process not ready until its first success (Compose's starting "
                            "state), and its failures never restart it")
        check.report(self.found, {"start_interval": "checks run every interval (periodSeconds) from the start"},
                     "no equivalent in orchestrator")
        spec["probes"] = {"readiness": probe}

    def shutdown(self, svc: Fields, spec: JSONDict) -> None:
        stop: JSONDict = {}
        if "stop_signal" in svc:
            signal = signal_name(svc.take("stop_signal"))
            if signal is None:
                self.found.unmapped(svc.at("stop_signal"), svc.place("stop_signal"), "orchestrator stops with "
                                    "SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGKILL, SIGUSR1 or SIGUSR2")
            else:
                stop["signal"] = signal
        if "stop_grace_period" in svc:
            grace = duration(svc.take("stop_grace_period"))
            if grace is None:
                self.found.unmapped(svc.at("stop_grace_period"), svc.place("stop_grace_period"),
                                    "expected a duration such as 10s or 1m30s")
            else:
                stop["timeoutSeconds"] = seconds(grace)
        if stop:
            spec["shutdown"] = stop

    def labels(self, svc: Fields) -> dict[str, str]:
        value = svc.take("labels")
        path = svc.place("labels")
        pairs: list[tuple[str, object, KeyPath]] = []
        if isinstance(value, dict):
            pairs = [(key, item, path + (key,)) for key, item in value.items()]
        elif isinstance(value, list):
            for index, item in enumerate(value):
                key, _, rest = str(item).partition("=")
                pairs.append((key, rest, path + (index,)))
        elif value is not None:
            self.found.unmapped(svc.at("labels"), path, "expected a mapping or a list of key=value")
        labels: dict[str, str] = {}
        for key, item, where in pairs:
            text = text_of(item, self.doc.raws.get(where)) if item is not None else ""
            if not is_label_key(key) or text is None:
                self.found.unmapped(self.doc.key_at(where), where, "not a label key orchestrator accepts (a name of "
                                    "at most 63 letters, digits, '-', '_', '.', after an optional prefix/)")
            else:
                labels[key] = text
        return labels


def _empty(value: object) -> bool:
    return value is None or value == "" or value == []


def _dependencies(value: object) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(service, condition, its long form) of a depends_on list or mapping."""
    if isinstance(value, list):
        return [(item, "service_started", None) for item in value if isinstance(item, str)]
    if isinstance(value, dict):
        found: list[tuple[str, str, dict[str, Any] | None]] = []
        for target, options in value.items():
            entry = options if isinstance(options, dict) else {}
            found.append((target, str(entry.get("condition", "service_started")), entry))
        return found
    return []


def _cpu_list(value: object) -> list[int]:
    """`0-3`, `0,2` or `1` as a list of CPU numbers ([] when it is none of those)."""
    cpus: list[int] = []
    for part in str(value).split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or int(high or low) >= _MAX_CPUS:
            return []
        cpus += range(int(low), int(high if dash else low) + 1)
    return sorted(set(cpus))
