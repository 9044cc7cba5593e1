"""core: the values every layer uses.

errors (the one exception tree, located user errors), clock (the one injectable clock), units (256Mi, 0.5
cpu, seconds), model (frozen specs and records, str-enums), events (event records and their fan-out).

Imports nothing else of orchestrator. Only clock reads time; nothing here forks, signals or touches files.
"""
