"""Lints and renders the chart with Helm's own library (PyPI helm-sdkpy), without a cluster.

helm-sdkpy exposes `helm lint` but no `helm template`, and its lint takes no values file and
returns each message's severity and path without the text (the Go error serialises as `{}`).
So, for every set of values:
  * the chart is copied to a temporary directory whose values.yaml is the chart's defaults merged
    with the overrides (what `-f file` does);
  * a template is added that, for every template file T, calls
    `fail (include "<chart>/templates/T" . | b64enc)`. In lint mode Helm's `fail` does not stop
    the render: it logs the message on the process's stderr ("INFO funcMap fail message=...").
    The file descriptor 2 is captured during the lint, and each T's rendered text is decoded.
So the manifests come from Helm's real engine (Go templates, Sprig, `.Capabilities`), exactly as
`helm template` writes them, and the lint messages are Helm's. Lint mode differs from install in
one way: `required` and `fail` only log (collected here as `missing_required` and `failures`).

Lint renders with Helm's default capabilities: the built-in Kubernetes APIs only, and helm-sdkpy
offers no `--api-versions`. To render as on a cluster that also serves a custom kind (e.g.
monitoring.coreos.com/v1/ServiceMonitor), `render(..., api_versions=[...])` turns each
`.Capabilities.APIVersions.Has "<that kind>"` of the copied templates into `true`; asking for a
kind that no template checks that way is an error, so the checks cannot silently go stale.

Lint has no cluster either, so Helm's `lookup` finds nothing there (as in `helm template`). To
render as on a cluster that holds an object already (e.g. a release being upgraded),
`render(..., lookups={("<apiVersion>", "<Kind>"): {...}})` turns each
`lookup "<apiVersion>" "<Kind>" <namespace> <name>` of the copied templates into that object
(whatever the namespace and name); again, a lookup that no template makes is an error.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "borcelle"
SEVERITIES = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
DUMP_FILE = "zz-check-dump.yaml"
DUMP_MARK = "BORCELLE-CHECK-DUMP"
_DUMP_LINE = re.compile(DUMP_MARK + r" (\S+) ([A-Za-z0-9+/=]*)\"")
_REQUIRED_LINE = re.compile(r"missing required value message=(\".*\")")
_FAIL_LINE = re.compile(r"funcMap fail message=(\"(?!" + DUMP_MARK + r").*\")")
_HAS_API = re.compile(r'\$?\.Capabilities\.APIVersions\.Has\s+"([^"]+)"')
_LOOKUP = re.compile(r'\blookup\s+"([^"]*)"\s+"([^"]*)"\s+(?:"[^"]*"|\$?[\w.]+)\s+(?:"[^"]*"|\$?[\w.]+)')


@dataclasses.dataclass
class LintMessage:
    severity: int
    path: str

    def __str__(self) -> str:
        return f"[{SEVERITIES.get(self.severity, self.severity)}] {self.path}"


@dataclasses.dataclass
class Rendered:
    """The outcome of linting and rendering the chart with one set of values."""

    values: dict[str, Any]
    # The APIs beyond the built-in ones the chart was rendered as served (render's api_versions).
    api_versions: tuple[str, ...]
    lint: list[LintMessage]
    # Template file name -> rendered text (NOTES.txt included).
    files: dict[str, str]
    missing_required: list[str]
    failures: list[str]
    log: str

    @property
    def problems(self) -> list[LintMessage]:
        """Lint warnings and errors (INFO, e.g. "icon is recommended", is not a problem)."""
        return [m for m in self.lint if m.severity >= 2]

    def documents(self) -> list[dict[str, Any]]:
        """Every rendered manifest (NOTES.txt excluded), parsed."""
        docs = []
        for name, text in sorted(self.files.items()):
            if not name.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__file__", name)
                    docs.append(doc)
        return docs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.documents() if d.get("kind") == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} {name}, found {len(found)}")
        return found[0]


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text()) or {}


def load_values_file(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over the defaults: maps merge, anything else replaces,
    and null removes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _template_files(chart: Path) -> list[str]:
    return sorted(
        p.name
        for p in (chart / "templates").iterdir()
        if p.is_file() and not p.name.startswith("_") and p.suffix in (".yaml", ".yml", ".txt")
    )


def _dump_template(chart_name: str, files: list[str]) -> str:
    lines = [
        "{{- /* Added by charts/tests/helm.py to capture each template's output; never shipped. */ -}}"
    ]
    for name in files:
        lines.append(
            f'{{{{- fail (printf "{DUMP_MARK} %s %s" "{name}" '
            f'(include "{chart_name}/templates/{name}" . | b64enc)) }}}}'
        )
    return "\n".join(lines) + "\n"


def _lint_capturing_stderr(chart_dir: Path) -> tuple[dict[str, Any], str]:
    import helm_sdkpy  # imported late: scripts/chart-check installs it

    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(chart_dir)))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        log = captured.read().decode("utf-8", "replace")
    return result, log


def _messages(result: dict[str, Any]) -> list[LintMessage]:
    return [LintMessage(int(m.get("Severity", 0)), str(m.get("Path", ""))) for m in result.get("Messages") or []]


def lint_chart(chart_dir: Path = CHART) -> list[LintMessage]:
    """`helm lint <chart_dir>` as it is, with its own values.yaml."""
    result, _ = _lint_capturing_stderr(chart_dir)
    return _messages(result)


def _serve_apis(chart_dir: Path, api_versions: list[str]) -> None:
    """Makes the templates of the copy at `chart_dir` see `api_versions` as served (see above)."""
    checked: set[str] = set()

    def served(match: re.Match) -> str:
        if match.group(1) not in api_versions:
            return match.group(0)
        checked.add(match.group(1))
        return "true"

    for path in sorted((chart_dir / "templates").iterdir()):
        if path.is_file():
            text = path.read_text()
            if (patched := _HAS_API.sub(served, text)) != text:
                path.write_text(patched)
    if unchecked := sorted(set(api_versions) - checked):
        raise ValueError(f"no template checks .Capabilities.APIVersions.Has for {unchecked}")


def _found_by_lookup(chart_dir: Path, lookups: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Makes the `lookup`s of the templates of the copy at `chart_dir` find `lookups` (see above)."""
    made: set[tuple[str, str]] = set()

    def found(match: re.Match) -> str:
        key = (match.group(1), match.group(2))
        if key not in lookups:
            return match.group(0)
        made.add(key)
        text = json.dumps(lookups[key])
        if "`" in text:
            raise ValueError(f"a backquote in the object of lookup {key}")
        return f"fromJson `{text}`"

    for path in sorted((chart_dir / "templates").iterdir()):
        if path.is_file():
            text = path.read_text()
            if (patched := _LOOKUP.sub(found, text)) != text:
                path.write_text(patched)
    if unmade := sorted(set(lookups) - made):
        raise ValueError(f"no template looks up {unmade}")


def render(
    overrides: dict[str, Any] | None = None,
    api_versions: list[str] | tuple[str, ...] = (),
    lookups: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> Rendered:
    """Lints the chart with the defaults merged with `overrides`, and renders every template, on a
    cluster that serves the built-in APIs and `api_versions` (as in `--api-versions`) and, when
    given, holds the objects of `lookups` ((apiVersion, kind) -> object) for `lookup` to find."""
    values = merge(default_values(), overrides or {})
    chart_name = yaml.safe_load((CHART / "Chart.yaml").read_text())["name"]
    with tempfile.TemporaryDirectory(prefix="borcelle-chart-") as tmp:
        chart_dir = Path(tmp) / chart_name
        shutil.copytree(CHART, chart_dir)
        (chart_dir / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        _serve_apis(chart_dir, list(api_versions))
        _found_by_lookup(chart_dir, lookups or {})
        files = _template_files(chart_dir)
        (chart_dir / "templates" / DUMP_FILE).write_text(_dump_template(chart_name, files))
        result, log = _lint_capturing_stderr(chart_dir)
    rendered = {name: base64.b64decode(text).decode() for name, text in _DUMP_LINE.findall(log)}
    return Rendered(
        values=values,
        api_versions=tuple(api_versions),
        lint=_messages(result),
        files=rendered,
        missing_required=[yaml.safe_load(m) for m in _REQUIRED_LINE.findall(log)],
        failures=[yaml.safe_load(m) for m in _FAIL_LINE.findall(log)],
        log=log,
    )


def expected_files(chart: Path = CHART) -> list[str]:
    return _template_files(chart)
