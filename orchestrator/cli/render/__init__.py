"""render: all formatting for people and scripts, one module per view.

common (table layout, cells, units, ages, JSON and YAML), tables (`get`, `history`, apply results), describe,
diffs, events, problems, rollouts (`rollout status`, `rollout history`), systemd (the unit `startup` writes).

Returns strings; never prints, never reads the clock (relative times take `now`, wall seconds). Imported by the
CLI for `get`, so it stays cheap to import: stdlib only at the top, PyYAML only inside to_yaml.
Secrets: env values never leave these modules; describe and diff show env names only.
"""
