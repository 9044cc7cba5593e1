"""convert: the files users migrate from (Procfile, Compose, supervisord, PM2) as orchestrator manifests.

One module per format turns the text of one input into a Conversion (result.py): manifest documents, and
a note for every setting that was not mapped, with its place. Pure translation: the caller reads the input
(bounded, as manifests are read) and writes the output; nothing of the input is ever run or evaluated
(jsliteral reads a PM2 .js file as data), and nothing here reads the environment or other files.

Imports core and the manifests modules beside it (documents, files, schema, codec); never the CLI, the
daemon or the engine.
"""

from __future__ import annotations

import os
import re

from .result import Conversion, Note, Options, placed, to_yaml

FORMATS = ("procfile", "compose", "supervisord", "pm2")

_COMPOSE = re.compile(r"(docker-)?compose(\.[^/]*)?\.ya?ml")
_PM2 = re.compile(r"(ecosystem([.-][^/]*)?|pm2([.-][^/]*)?|process)\.(config\.)?([cm]?js|json|ya?ml)")


def detect(file: str, text: str | None = None) -> str | None:
    """The format a file's name says (Procfile, Procfile.dev, docker-compose.yml, compose.override.yaml,
    supervisord.conf or any *.conf / *.ini with a [program:x] section, ecosystem.config.js / .json / .yaml),
    or None when its name says none of these."""
    name = os.path.basename(file)
    lower = name.lower()
    if name == "Procfile" or name.startswith("Procfile."):
        return "procfile"
    if _COMPOSE.fullmatch(lower):
        return "compose"
    if _PM2.fullmatch(lower):
        return "pm2"
    if lower.endswith((".conf", ".ini")) and (lower.startswith("supervisor") or "[program:" in (text or "")):
        return "supervisord"
    return None


def convert(form: str, text: str, file: str, options: Options) -> Conversion:
    """The manifests of `text`, read as `form` (one of FORMATS); raises ManifestError when it cannot be
    read as that format, with the place of every problem."""
    if form == "procfile":
        from .procfile import convert as procfile

        return procfile(text, file, options)
    if form == "compose":
        from .compose import convert as compose

        return compose(text, file, options)
    if form == "supervisord":
        from .supervisord import convert as supervisord

        return supervisord(text, file, options)
    if form == "pm2":
        from .pm2 import convert as pm2

        return pm2(text, file, options)
    raise ValueError(f"unknown format {form!r}")


__all__ = ["FORMATS", "Conversion", "Note", "Options", "convert", "detect", "placed", "to_yaml"]
