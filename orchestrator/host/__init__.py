"""host: every effect on this host, each behind a small interface the engine is handed.

execute (the only place that forks, signals and reaps), subreaper (the orphans of replicas it inherits),
observe (/proc and psutil), cgroups and limits (kernel and watchdog enforcement), logs (capture and
rotation), metrics (the sampler), probes (the prober's thread and workers), sockets (the owner-only Unix
sockets the orchestrator serves and connects to), statedir (trusting the state dir), etcd (the fleet's
client), stamp (a one-line file rewritten in place), fenceguard (the process that fences a killed fleet
agent's singletons).

Imports core and planning (autoscale's pure arithmetic). Never decides what should run: the engine does.
"""
