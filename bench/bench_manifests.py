"""Manifest benchmark: `validate` of 500 documents, and hostile inputs refused, each beside its floor.

Everything goes through the real CLI, `python -m orchestrator validate -f PATH`, as a subprocess of this
script, on files it writes in a temporary directory of its own (removed at the end, whatever happens).

    python bench/bench_manifests.py [--runs 10] [--tree PATH] [--json]

1. `validate` of one file of 500 Process documents, with a fresh empty XDG_CACHE_HOME for each run (cold:
   the compiled schema checks are generated and written to the cache) and with a warm one (they are read
   from it), beside `python -c pass`. Target (DESIGN.md): at most 6x the floor.
2. Hostile inputs, each of which must be refused (exit code 1, stderr naming the problem) in under 1 s and
   with under 50 MB of extra memory: an alias bomb ("billion laughs"), 100,000 levels of flow nesting, a
   50 MiB file, a FIFO in a manifest directory (a blocking open would hang: every run has a timeout, past
   which the bench fails), a `!!python/object/apply:os.system` tag. The time is beside `python -c pass`; the
   peak RSS (ru_maxrss of that child alone, from os.wait4) is beside the peak RSS of `validate` of a small
   valid file, measured the same way: extra memory is the difference.

Medians of --runs runs, the commands interleaved run by run so that a noisy machine weighs on all of them
alike. On Linux a child's ru_maxrss is at least its parent's RSS when it was spawned (the address space it
execs from is ours), so this script keeps its own RSS small (the 50 MiB file is written in pieces) and
says so when a figure is not above it. Measured commands run without PYTHONDONTWRITEBYTECODE, after
warming the bytecode cache; the package measured is the one in --tree PATH (default: this checkout), every
command running in PATH with PATH first on PYTHONPATH. This script makes itself a child subreaper: every
process it starts is waited for, and whatever is left is killed and reaped (exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from benchlib import (
    BenchError,
    environment,
    figure_row,
    imported_package,
    log,
    measured_env,
    median,
    run_bench,
    table_lines,
    tree_commit,
    warm_bytecode,
)

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = 500
TIME_TARGET_S = 1.0
EXTRA_MEMORY_TARGET_MB = 50
VALIDATE_TARGET_RATIO = 6
TIMEOUT_S = 30  # past this a measured command counts as hung: the bench fails


# -- the environment of every measured command ---------------------------------------------------------

TREE = ROOT
ENV = measured_env(TREE)


def use_tree(tree: Path) -> None:
    global TREE, ENV
    TREE, ENV = tree, measured_env(tree)


def prepare_tree(env: dict[str, str], argv: list[str]) -> str:
    """Warm the bytecode cache of TREE's package (and run `argv` once); returns where `orchestrator` is
    imported from, checked to be TREE/orchestrator."""
    warm_bytecode(TREE, env, argv)
    return imported_package(TREE, env)


# -- one measured command ------------------------------------------------------------------------------


class Run(NamedTuple):
    seconds: float
    maxrss_kb: int  # ru_maxrss of this child alone (KiB on Linux)
    code: int
    stderr: str


def mb(kib: float) -> float:
    """ru_maxrss (KiB on Linux) in MB (10^6 bytes)."""
    return kib * 1024 / 1e6


def measured(argv: list[str], env: dict[str, str], timeout: float = TIMEOUT_S) -> Run:
    """Run `argv` in TREE with stdin and stdout on /dev/null and stderr in a file, reap it with os.wait4 (its
    own resource usage) and time it from launch to reaped. Past `timeout` it is killed and reaped and
    BenchError raised; it is reaped whatever happens."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=TREE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            waited = _wait4(proc, timeout)
            elapsed = time.perf_counter() - t0
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        if waited is None:
            raise BenchError(f"`{' '.join([Path(argv[0]).name, *argv[1:]])}` still running after {timeout:g} s: killed")
        err.seek(0)
        return Run(elapsed, waited.ru_maxrss, proc.returncode, err.read().decode(errors="replace"))


def _wait4(proc: subprocess.Popen[bytes], timeout: float) -> resource.struct_rusage | None:
    """Reap `proc` with os.wait4 and return its rusage (setting proc.returncode), or None if it is still
    running after `timeout` seconds (left unreaped)."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            if not select.select([pidfd], [], [], timeout)[0]:
                return None
        finally:
            os.close(pidfd)
        _, status, usage = os.wait4(proc.pid, 0)
    else:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(0.0005)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def validate(path: Path) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "validate", "-f", str(path)]


def expect_valid(run: Run, what: str) -> Run:
    if run.code != 0:
        raise BenchError(f"{what} exited {run.code}: {run.stderr[-2000:].strip()}")
    return run


# -- the inputs ----------------------------------------------------------------------------------------


def document(i: int) -> str:
    return (f"apiVersion: orchestrator/v1\nkind: Process\nmetadata:\n  name: p{i}\n  labels: {{tier: backend}}\n"
            f"spec:\n  command: [\"sleep\", \"3600.{i}\"]\n  env: {{PORT: \"80{i % 100:02d}\"}}\n"
            "  restartPolicy: Always\n  backoff: {initialSeconds: 1, maxSeconds: 30}\n")


SMALL = ("apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: small}\nspec:\n"
         "  command: [\"sleep\", \"3600\"]\n")


def write_big(path: Path, size: int) -> None:
    """A valid-looking Process document whose env has many long values, until the file is over `size` bytes;
    written in pieces, so that this process stays small (its RSS is the least any child's ru_maxrss can be)."""
    value = "x" * 1000
    with open(path, "w") as out:
        out.write("apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: big}\nspec:\n"
                  "  command: [\"sleep\", \"3600\"]\n  env:\n")
        written, i = out.tell(), 0
        while written <= size:
            chunk = "".join(f"    V{j:06d}: \"{value}\"\n" for j in range(i, i + 1000))
            out.write(chunk)
            written += len(chunk)
            i += 1000


class Hostile(NamedTuple):
    key: str
    label: str
    size: str  # the N column
    path: Path  # what `validate -f` is given
    expect: tuple[str, ...]  # one of these in stderr


def write_inputs(workdir: Path) -> tuple[Path, Path, list[Hostile]]:
    many = workdir / "many.yaml"
    many.write_text("---\n".join(document(i) for i in range(DOCUMENTS)))
    small = workdir / "small.yaml"
    small.write_text(SMALL)

    hostile: list[Hostile] = []
    bomb = workdir / "bomb.yaml"
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb.write_text("\n".join(lines) + "\n")
    hostile.append(Hostile("alias_bomb", "alias bomb (9^10 values)", f"{bomb.stat().st_size} B", bomb,
                           ("aliases expand to",)))

    deep = workdir / "deep.yaml"
    deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    hostile.append(Hostile("deep_nesting", "flow nesting, 100,000 levels", "100000", deep,
                           ("nesting depth", "nested more than")))

    big = workdir / "big.yaml"
    write_big(big, 50 << 20)
    hostile.append(Hostile("big_file", "file over 50 MiB", f"{big.stat().st_size / (1 << 20):.1f} MiB", big,
                           ("larger than",)))

    folder = workdir / "with-fifo"
    folder.mkdir()
    (folder / "a.yaml").write_text(SMALL)
    os.mkfifo(folder / "pipe.yaml")
    hostile.append(Hostile("fifo", "FIFO pipe.yaml beside a.yaml (dir)", "2 files", folder, ("named pipe",)))

    tag = workdir / "tag.yaml"
    tag.write_text("apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: tagged}\nspec:\n"
                   "  command: !!python/object/apply:os.system [\"true\"]\n")
    hostile.append(Hostile("python_tag", "!!python/object/apply:os.system tag", f"{tag.stat().st_size} B", tag,
                           ("unsupported YAML tag",)))
    return many, small, hostile


# -- the measurements ----------------------------------------------------------------------------------


def cache_written(cache_home: Path) -> bool:
    """Did a run write compiled schema checks under this XDG_CACHE_HOME?"""
    return any((cache_home / "orchestrator").glob("schema_*.bin"))


def bench(runs: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-manifests-"))
    try:
        many, small, hostile = write_inputs(workdir)
        warm_home = workdir / "cache-warm"
        warm_home.mkdir(mode=0o700)
        warm_env = {**ENV, "XDG_CACHE_HOME": str(warm_home)}
        package = prepare_tree(warm_env, validate(small))
        log(f"bytecode cache warmed: `python -m compileall -q {TREE / 'orchestrator'}` and one untimed `validate` "
            "of a small file, with PYTHONDONTWRITEBYTECODE removed from the environment of every measured command")
        expect_valid(measured(validate(many), warm_env), f"validate of {DOCUMENTS} documents")  # untimed
        if not cache_written(warm_home):
            log(f"warning: validate wrote no compiled schema check under XDG_CACHE_HOME={warm_home}: "
                "cold and warm measure the same thing")

        floors: list[Run] = []
        cold: list[Run] = []
        warm: list[Run] = []
        smalls: list[Run] = []
        cold_written: list[bool] = []
        refused: dict[str, list[Run]] = {h.key: [] for h in hostile}
        for r in range(runs):
            floors.append(expect_valid(measured([sys.executable, "-c", "pass"], warm_env), "python -c pass"))
            cold_home = Path(tempfile.mkdtemp(prefix="cache-cold-", dir=workdir))
            try:
                cold.append(expect_valid(measured(validate(many), {**ENV, "XDG_CACHE_HOME": str(cold_home)}),
                                         f"validate of {DOCUMENTS} documents, cold cache"))
                cold_written.append(cache_written(cold_home))
            finally:
                shutil.rmtree(cold_home, ignore_errors=True)
            warm.append(expect_valid(measured(validate(many), warm_env), f"validate of {DOCUMENTS} documents"))
            smalls.append(expect_valid(measured(validate(small), warm_env), "validate of a small file"))
            for h in hostile:
                refused[h.key].append(measured(validate(h.path), warm_env))
            log(f"[run {r + 1}/{runs}] python -c pass {floors[-1].seconds * 1000:.0f} ms, validate {DOCUMENTS} cold "
                f"{cold[-1].seconds * 1000:.0f} ms, warm {warm[-1].seconds * 1000:.0f} ms, small "
                f"{smalls[-1].seconds * 1000:.0f} ms / {mb(smalls[-1].maxrss_kb):.1f} MB; refused: "
                + ", ".join(f"{k} {v[-1].seconds * 1000:.0f} ms / {mb(v[-1].maxrss_kb):.1f} MB exit {v[-1].code}"
                            for k, v in refused.items()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def summary(runs_: list[Run]) -> dict[str, Any]:
        return {"ms": median([x.seconds * 1000 for x in runs_]), "maxrss_kb": median([x.maxrss_kb for x in runs_]),
                "ms_all": [x.seconds * 1000 for x in runs_], "maxrss_kb_all": [x.maxrss_kb for x in runs_]}

    floor, small_run = summary(floors), summary(smalls)
    out: dict[str, Any] = {
        "package": package, "documents": DOCUMENTS, "floor": floor,
        "validate_cold": {**summary(cold), "cache_written": all(cold_written)},
        "validate_warm": summary(warm), "validate_small": small_run, "hostile": [],
    }
    for name in ("validate_cold", "validate_warm"):
        out[name]["ratio"] = out[name]["ms"] / floor["ms"]
        out[name]["ok"] = out[name]["ratio"] <= VALIDATE_TARGET_RATIO
    for h in hostile:
        got = refused[h.key]
        figures = summary(got)
        extra_mb = mb(figures["maxrss_kb"] - small_run["maxrss_kb"])
        codes = sorted({x.code for x in got})
        named = all(any(e in x.stderr for e in h.expect) for x in got)
        out["hostile"].append({
            "key": h.key, "label": h.label, "size": h.size, **figures, "extra_mb": extra_mb,
            "exit_codes": codes, "expect": list(h.expect), "named": named,
            "stderr": got[-1].stderr.strip()[:500],
            "time_ok": figures["ms"] < TIME_TARGET_S * 1000, "memory_ok": extra_mb < EXTRA_MEMORY_TARGET_MB,
            "refusal_ok": codes == [1] and named,
        })
    out["bench_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    low = [name for name, kb in [("validate of a small file", small_run["maxrss_kb"]),
                                 *((h["key"], h["maxrss_kb"]) for h in out["hostile"])]
           if kb <= out["bench_maxrss_kb"]]
    if low:
        log(f"warning: peak RSS of {', '.join(low)} not above this script's own ({out['bench_maxrss_kb']} KiB): "
            "that figure may be ours, not the command's")
    return out


# -- the report ----------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    env = report["environment"]
    m = report["manifests"]
    commit = f" at {env['tree_commit']}" if env.get("tree_commit") else ""
    lines = [(f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; {env['bytecode']}; "
              f"medians of {env['runs']}; time floor = `python -c pass`, memory floor = peak RSS of `validate` of "
              "a 1-document file, both in the same run"),
             f"orchestrator from {m['package']}{commit}"]
    body: list[list[str]] = []
    floor_ms, small = m["floor"]["ms"], m["validate_small"]
    target = f"<= {VALIDATE_TARGET_RATIO}x floor"
    for name, label in (("validate_cold", "cold cache"), ("validate_warm", "warm cache")):
        v = m[name]
        body.append(figure_row(f"validate {m['documents']} docs, {label}, ms", m["documents"], floor_ms, v["ms"],
                               "{:.0f}", target, v["ok"]))
    body.append(figure_row("  peak RSS (warm), MB", m["documents"], mb(small["maxrss_kb"]),
                           mb(m["validate_warm"]["maxrss_kb"]), "{:.1f}", "-", None))
    body.append(figure_row("validate 1 doc (memory floor), ms", 1, floor_ms, small["ms"], "{:.0f}", "-", None))
    body.append(figure_row("  peak RSS, MB", 1, None, mb(small["maxrss_kb"]), "{:.1f}", "-", None))
    for h in m["hostile"]:
        body.append(figure_row(f"{h['label']}: refused, ms", h["size"], floor_ms, h["ms"], "{:.0f}",
                               f"< {TIME_TARGET_S * 1000:.0f} ms", h["time_ok"]))
        body.append(figure_row(f"  peak RSS, MB (extra {h['extra_mb']:+.1f})", h["size"], mb(small["maxrss_kb"]),
                               mb(h["maxrss_kb"]), "{:.1f}", f"extra < {EXTRA_MEMORY_TARGET_MB} MB", h["memory_ok"]))
        codes = ",".join(str(c) for c in h["exit_codes"])
        expect = " or ".join(repr(e) for e in h["expect"])
        body.append([f"  exit code, stderr names it{'' if h['named'] else ' (NOT named)'}", h["size"], "-", codes,
                     "-", f"1, {expect}", "yes" if h["refusal_ok"] else "NO"])
    lines += table_lines(body)
    if not m["validate_cold"]["cache_written"]:
        lines.append("note: a cold run wrote no compiled schema check to its XDG_CACHE_HOME")
    lines.append("")
    lines.append("stderr of each refusal (last run):")
    for h in m["hostile"]:
        lines.append(f"  {h['key']}: {h['stderr'].splitlines()[0] if h['stderr'] else '(empty)'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of every command; medians (default 10)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the source tree whose orchestrator package is measured, e.g. an older checkout "
                             "made with `git worktree add` (default: the checkout this script is in)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    tree = args.tree.resolve()
    if not (tree / "orchestrator" / "__main__.py").is_file():
        parser.error(f"--tree {args.tree}: no orchestrator/__main__.py there")
    use_tree(tree)

    def measure() -> dict[str, Any]:
        report: dict[str, Any] = {"environment": {
            **environment(), "runs": args.runs, "tree": str(TREE), "tree_commit": tree_commit(TREE),
            "bytecode": "bytecode cache warmed, PYTHONDONTWRITEBYTECODE unset for measured commands",
        }}
        report["manifests"] = bench(args.runs)
        return report

    return run_bench(measure, table, args.json)


if __name__ == "__main__":
    sys.exit(main())
