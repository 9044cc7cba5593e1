"""daemon: the daemon process, one per state dir.

lifecycle (the lock, restore and adoption, serving, closing), operations (what each request does to desired
state, on the reconciler's thread), routes (the control API's route table), control (the HTTP server on the
owner-only Unix socket), store (SQLite: revisions, records, events, watches), record_codec (records <-> JSON),
watch (manifest watchers), prometheus (the /metrics endpoint).

Imports core, planning, manifests, host and engine; never the CLI.
"""
