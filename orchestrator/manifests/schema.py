"""The JSON Schemas of schemas/: loading them, a compiled check for the common case, the full validator
for error reports.

Most documents are valid, and saying so is all that is needed of them: a validator compiled to Python
code by fastjsonschema does that about fifty times faster than jsonschema, and without importing it (0.1 s
on its own). When the compiled check refuses a document, jsonschema validates it again and its errors,
every one of them with its path, are what users see; so a document is invalid only when jsonschema says
so. Our schemas use only keywords that mean the same in the draft fastjsonschema reads them as (2019-09)
and in Draft 2020-12, and the compiled check is the stricter one where they differ (`$` in a pattern
matches no trailing newline): tests/test_schema.py holds the two to agreeing on every document it tries.
Rules across fields are `if`/`else` and `false` subschemas, read alike by both, written so that a usual
document passes each `if` (the compiled check raises and catches an exception for every `if` that fails: one
per rule and document made it 2.5 times slower); keywords new in 2019-09 or 2020-12 (`prefixItems`,
`dependentRequired`, `unevaluatedProperties`) would be ignored by the compiled check, which would then pass
what jsonschema refuses, and are not used.

The generated code of each schema is kept, compiled and with a checksum, in the user's cache directory
(`$XDG_CACHE_HOME/orchestrator`, used only when nobody else can write to it or above it), named by a hash of
the schema, the fastjsonschema version and the Python bytecode version; anything wrong with the cache means
compiling afresh in memory (about 0.05 s), never a failure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import marshal
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

_ANNOTATIONS = {"description", "default", "title", "examples", "$comment"}
_CONTAINERS = {"properties", "$defs", "patternProperties"}  # whose keys are names, not keywords


def _schema_dir() -> Path:
    """schemas/ shipped inside an installed package, else the one at the root of a source checkout."""
    packaged = resources.files("orchestrator") / "schemas"
    # Only a package installed as plain files is supported: a zipped one would need extraction first.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas"


@functools.cache
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """Every schema of one kind in schemas/, keyed by the (apiVersion, kind) its `const`s accept.

    manifest.v1.json, which picks one of them by `kind` for editors and CI tools, is not among them: a
    document's kind is checked first (in words), then its kind's own schema."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in sorted(_schema_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            schema = json.loads(entry.read_text(encoding="utf-8"))
            properties = schema["properties"]
            if "const" not in properties["kind"]:
                continue
            found[(properties["apiVersion"]["const"], properties["kind"]["const"])] = schema
    return found


@functools.cache
def full_validator(api_version: str, kind: str) -> Draft202012Validator:
    """jsonschema's validator: every error, with its path (imported only when a document needs it)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_inline_refs(schemas()[(api_version, kind)]))


def is_valid(api_version: str, kind: str, document: Any) -> bool:
    """Does the compiled check pass `document`? False means: ask full_validator for the errors."""
    check = _compiled(api_version, kind)
    try:
        check(document)
    except Exception:  # noqa: BLE001 - fastjsonschema's own exception, or anything odd: the full check decides
        return False
    return True


_compile_lock = threading.Lock()


@functools.cache
def _compiled(api_version: str, kind: str) -> Callable[[Any], Any]:
    import fastjsonschema

    # Without its $id the root function of the generated code is named `validate` (references are local).
    schema = {k: v for k, v in _without_annotations(schemas()[(api_version, kind)]).items() if k != "$id"}
    with _compile_lock:  # the daemon's API threads may ask at once
        try:
            cached = _from_cache(schema, fastjsonschema)
        except Exception:  # noqa: BLE001 - a cache that cannot serve is no reason to fail: compile afresh
            cached = None
    if cached is not None:
        return cached
    return fastjsonschema.compile(schema, use_default=False)  # type: ignore[no-any-return]


def _from_cache(schema: dict[str, Any], fastjsonschema: Any) -> Callable[[Any], Any] | None:
    """The compiled check from the cache, written there first if missing; None without a private cache.

    The file holds the marshalled code object (what a .pyc holds) after the SHA-256 of it: a file cut short
    or garbled is noticed, and made again, never run.
    """
    cache = _cache_dir()
    if cache is None:
        return None
    identity = [schema, fastjsonschema.VERSION, importlib.util.MAGIC_NUMBER.hex()]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"schema_{key}.bin"
    code = None
    with contextlib.suppress(FileNotFoundError):
        data = _read_private(path)
        if hashlib.sha256(data[32:]).digest() == data[:32]:
            code = marshal.loads(data[32:])
    if code is None:
        code = compile(fastjsonschema.compile_to_code(schema, use_default=False), "<orchestrator schema>", "exec")
        payload = marshal.dumps(code)
        _write_atomically(path, hashlib.sha256(payload).digest() + payload)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - code fastjsonschema generated from our schema, in a private cache
    validate: Callable[[Any], Any] = namespace["validate"]
    return validate


def _read_private(path: Path) -> bytes:
    with open(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"{path} is not this user's alone")
        return handle.read()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)  # whole or not at all, if two runs race
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _cache_dir() -> Path | None:
    """A directory for the compiled checks that nobody but this user (and root) can write to, nor any
    directory above it (what is in it is run): $XDG_CACHE_HOME/orchestrator, else ~/.cache/orchestrator.
    None where there is no such place (HOME unset, a shared directory on the way)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    try:
        (Path(base) / "orchestrator").mkdir(parents=True, exist_ok=True, mode=0o700)
        path = Path(os.path.realpath(Path(base) / "orchestrator"))  # judged where it really is
        for directory in (path, *path.parents):
            info = os.stat(directory)
            writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            if directory == path:
                if info.st_uid != os.geteuid() or writable_by_others:
                    return None
            elif info.st_uid not in (os.geteuid(), 0) or (writable_by_others and not info.st_mode & stat.S_ISVTX):
                return None  # someone else could swap what lies below (a sticky /tmp is fine)
    except OSError:
        return None
    return path


def _without_annotations(node: Any, names: bool = False) -> Any:
    """The schema without descriptions, titles and defaults: they change no verdict, and fastjsonschema
    would copy them into every error it can raise."""
    if isinstance(node, dict):
        return {key: _without_annotations(value, names=not names and key in _CONTAINERS)
                for key, value in node.items() if names or key not in _ANNOTATIONS}
    if isinstance(node, list):
        return [_without_annotations(item) for item in node]
    return node


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local `$ref` replaced by what it points to.

    The same rules, checked about twice as fast: jsonschema resolves each `$ref` through its registry on every
    use (500 documents: 0.55 s of validation, half of it in reference lookups). Our schemas' references are
    local (#/$defs/...) and not recursive.
    """
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[len("#/$defs/"):] in definitions:
                target = resolve(definitions[ref[len("#/$defs/"):]])
                siblings = {k: resolve(v) for k, v in node.items() if k != "$ref"}
                # A $ref beside other keywords means both apply. Annotations of the referring node win;
                # a validation keyword in both places keeps both, through allOf.
                if set(siblings) & set(target) - _ANNOTATIONS:
                    return {"allOf": [target, siblings]}
                return {**target, **siblings}
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]
