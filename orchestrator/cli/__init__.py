"""cli: the `orchestrator` command.

main (argument parsing, `validate`, errors to exit codes), exit_codes (what each exit status means), run (the
foreground run), commands (the daemon-backed commands), client (the control API's client, and starting a
daemon), render/ (every view of tables, describe, diffs, events and problems).

May import every layer below it. Prints and exits only here; modules below return values and raise.
"""
