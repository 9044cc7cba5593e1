"""What the `orchestrator` command's exit status means, in one place for every command.

0 success; 1 invalid input (manifests, arguments) or a failed wait; 2 usage errors (argparse) and, for
`diff` and `rollout status` (where 1 has a meaning of its own), errors (kubectl's convention); 130
interrupted before the work was done.
"""

EXIT_OK = 0
EXIT_INVALID = 1  # invalid input: manifests, arguments, a daemon's refusal
EXIT_FAILED = 1  # the work ran and did not succeed (a wait that timed out)
EXIT_USAGE = 2  # the command line is wrong: argparse's code, and UsageError's
EXIT_ERROR = 2  # diff, rollout status: the command could not answer (no daemon, no such object, a Job)
EXIT_INTERRUPTED = 130
