"""`orchestrator validate` as a pre-commit hook (.pre-commit-hooks.yaml at the repository's root).

pre-commit passes the files it matched as arguments of their own; `validate` takes each as `-f FILE`. Options
in the hook's `args` pass through: `-f manifests` adds the whole tree (so that a dependency defined in a file
that did not change is found), `-o json` the report's form. Never: reading the files itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .main import main as orchestrator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="orchestrator-validate", description="orchestrator validate, with the files pre-commit passes.")
    parser.add_argument("-f", "--filename", dest="paths", action="append", default=[], metavar="PATH",
                        help="a manifest file or directory to check as well; repeatable")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    parser.add_argument("files", nargs="*", metavar="FILE", help="the files pre-commit matched")
    args = parser.parse_args(argv)
    paths = [*args.paths, *args.files]
    if not paths:
        return 0  # nothing to check
    return orchestrator(["validate", "-o", args.output, *(word for path in paths for word in ("-f", path))])


if __name__ == "__main__":
    sys.exit(main())
