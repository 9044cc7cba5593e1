"""`orchestrator convert`: a Procfile, Compose file, supervisord.conf or PM2 ecosystem file as manifests.

Reads the input within the manifests' budgets (files.read_text: regular files only, bounded in bytes),
lets manifests/convert translate it, prints a note per setting not mapped on stderr, and writes
multi-document YAML to stdout or to --output-file. Relative paths in the output (workingDir, envFrom) are
made relative to where the manifests go: the output file's folder, or the current directory for stdout.
Runs nothing from the input.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ..core.errors import ManifestError, UsageError, UserError
from ..manifests.convert import FORMATS, Options, detect, placed, to_yaml
from ..manifests.convert import convert as translate
from ..manifests.convert.values import NAME_RULE, is_name
from ..manifests.files import STDIN, ReadLimits, read_text, shown_as
from .exit_codes import EXIT_OK


def convert(args: argparse.Namespace) -> int:
    path = _input(args)
    if args.namespace is not None and not is_name(args.namespace):
        raise UsageError(f"--namespace {args.namespace!r}: a namespace is {NAME_RULE}")
    output = args.output_file
    if output is not None and os.path.lexists(output) and not args.force:
        raise UsageError(f"--output-file {output}: it exists (give --force to replace it)")
    if path == STDIN and args.source_format is None:
        raise UsageError("reading standard input: say what it is with --from " + "|".join(FORMATS))
    limits = ReadLimits.from_environment(os.environ)
    text, problems = read_text(path, limits)
    if text is None:
        raise ManifestError(problems)
    form = args.source_format or detect(path, text)
    if form is None:
        raise UsageError(f"cannot tell what {path} is from its name: give --from " + "|".join(FORMATS))
    source_dir = os.getcwd() if path == STDIN else os.path.dirname(os.path.abspath(path))
    dotenv = ".env" if form == "procfile" and os.path.isfile(os.path.join(source_dir, ".env")) else None
    name = shown_as(path)
    conversion = translate(form, text, name, Options(source_dir, args.namespace, dotenv, limits))
    for note in conversion.notes:
        print(note, file=sys.stderr)
    if not conversion.documents:
        raise UserError(f"{name}: nothing to convert: no program in it could be mapped"
                        + (" (see the notes above)" if conversion.notes else ""))
    target_dir = os.path.dirname(os.path.abspath(output)) if output is not None else os.getcwd()
    body = to_yaml(placed(conversion, source_dir, target_dir), name, form)
    if output is None:
        sys.stdout.write(body)
        sys.stdout.flush()
    else:
        _write(output, body)
    count = len(conversion.documents)
    print(f"converted {name} ({form}): {count} object{'s' if count != 1 else ''}"
          + (f" to {output}" if output else "") + f", {len(conversion.notes)} note(s)", file=sys.stderr)
    return EXIT_OK


def _input(args: argparse.Namespace) -> str:
    given = [p for p in (args.input, args.filename) if p is not None]
    if len(given) != 1:
        raise UsageError("name one file to convert (FILE or -f FILE; - for standard input)")
    return str(given[0])


def _write(output: str, body: str) -> None:
    """The file written whole or not at all (a temporary file beside it, renamed over it)."""
    folder = os.path.dirname(os.path.abspath(output))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".convert-", suffix=".yaml", dir=folder)
    except OSError as error:
        raise UserError(f"--output-file {output}: cannot write there: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)
        os.chmod(temporary, 0o644)
        os.replace(temporary, output)
    except OSError as error:
        os.unlink(temporary)
        raise UserError(f"--output-file {output}: cannot write it: {error.strerror or error}") from None
