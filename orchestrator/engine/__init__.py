"""engine: the reconciler, the single writer of run state.

reconcile (the loop: observe -> plan -> execute on every wake-up, one selector over every pidfd and the wake
pipe), folding (what a probe transition, a limit breach or an ended hook does to a record: pure).

Imports core, planning and host. Other threads never touch run state: they `post` messages to the loop.
"""
