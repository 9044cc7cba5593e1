"""planning: the pure decisions.

graph (dependencies, desired state), diff (the one table of which changes need a restart), policy (restarts,
backoff, readiness), plan ((desired, records, now) -> actions and a wake-up time), autoscale (pool sizes),
status (run state as the documents `get` shows).

Imports only core. No I/O and no clock: nothing here imports os, time, subprocess, signal, socket,
selectors, threading or psutil (an import-linter contract checks it); time comes in as `now`.
"""
