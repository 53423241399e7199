"""Prints the chart's manifests, rendered by Helm's engine, as one JSON array.

    python3 charts/tests/render.py '{"operator": {"watchNamespace": "team-a"}}'

The argument is a JSON object of values merged over the chart's defaults. The operator's
end-to-end suite (operator/tests/e2e.rs) installs the chart's ServiceAccount and RBAC from this
output into a real cluster. Needs what `scripts/chart-check` installs (helm-sdkpy, PyYAML).
"""

from __future__ import annotations

import json
import sys

import helm


def main() -> int:
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    rendered = helm.render(overrides)
    problems = [str(m) for m in rendered.problems] + [str(f) for f in rendered.failures + rendered.missing_required]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    json.dump([{k: v for k, v in d.items() if k != "__file__"} for d in rendered.documents()], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
