"""plan() for N processes: the pure planner's cost per reconcile pass (DESIGN.md target: 2,000 under 20 ms).

    python bench/bench_plan.py [--sizes 500,2000] [--runs 30]

Five shapes of run state, each the median of --runs calls: nothing running yet (every replica to start),
all running and unchanged (the idle resync), all running with one spec changed (an apply), and every
process mid-rollout (all specs changed, a rolling update under way for each: the planner's worst case), and
a tenth of them mid-rollout. Every tenth
process depends on the one before it, so dependency checks are exercised. The floor is one dict lookup per
replica in a Python loop, the least any planner that looks at every replica must spend.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import median_ms

from orchestrator.core.model import Dependency, ProcessIdentity, ProcessSpec, ReplicaId, ReplicaRecord
from orchestrator.planning.graph import desired_state
from orchestrator.planning.plan import plan
from orchestrator.planning.rollout import RolloutState, revision_hash


def specs(n: int) -> list[ProcessSpec]:
    return [
        ProcessSpec(name=f"p{i}", command=("sleep", "3600"), depends_on=(Dependency(f"p{i - 1}"),) if i % 10 else ())
        for i in range(n)
    ]




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; median of {args.runs} calls; floor: one dict lookup per replica")
    print(f"{'shape':<28} | {'N':>5} | {'floor ms':>8} | {'plan ms':>8} | {'ratio':>6} | target")
    for n in (int(s) for s in args.sizes.split(",")):
        all_specs = specs(n)
        desired = desired_state(all_specs)
        running = {ReplicaId(s.key, 0): ReplicaRecord(spec=s, process=ProcessIdentity(1000 + i, 1), started_at=1.0)
                   for i, s in enumerate(all_specs)}
        changed = desired_state([dataclasses.replace(all_specs[0], command=("sleep", "1")), *all_specs[1:]])
        every = desired_state([dataclasses.replace(s, command=("sleep", "1")) for s in all_specs])
        # Each just started (one old replica left, none new available yet), as the last pass left it.
        rolling = {key: RolloutState(revision_hash(spec), 50.0, 50.0, (0, 1)) for key, spec in every.specs.items()}
        tenth = desired_state([dataclasses.replace(s, command=("sleep", "1")) if i % 10 == 0 else s
                               for i, s in enumerate(all_specs)])
        rolling_tenth = {key: state for key, state in rolling.items() if key in tenth.specs
                         and tenth.specs[key].command == ("sleep", "1")}
        keys = list(running)
        floor = median_ms(lambda running=running, keys=keys: [running.get(k) for k in keys], args.runs)
        for shape, state, records, rollouts in (("nothing running (cold)", desired, {}, {}),
                                                ("all running, unchanged", desired, running, {}),
                                                ("all running, 1 changed", changed, running, {}),
                                                ("a tenth mid-rollout", tenth, running, rolling_tenth),
                                                ("all mid-rollout", every, running, rolling)):
            ms = median_ms(lambda state=state, records=records, rollouts=rollouts: plan(state, records, 100.0,
                                                                                     rollouts), args.runs)
            target = "< 20 ms" if n == 2000 else "-"
            print(f"{shape:<28} | {n:>5} | {floor:>8.2f} | {ms:>8.2f} | {ms / floor:>5.1f}x | {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
