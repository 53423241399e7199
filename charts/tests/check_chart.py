#!/usr/bin/env python3
"""Checks of the borcelle Helm chart: lint, rendered manifests, RBAC, security, values schema.

Run by scripts/chart-check (which installs helm-sdkpy and PyYAML when missing). Every manifest is
rendered by Helm's own engine (see helm.py); nothing needs a cluster. The test modules also run
under pytest (`pytest charts/tests`).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODULES = ["test_scenarios", "test_values", "test_self"]


def main() -> int:
    suite = unittest.defaultTestLoader.loadTestsFromNames(MODULES)
    result = unittest.TextTestRunner(verbosity=1 if "-q" in sys.argv else 2).run(suite)
    failed = len(result.failures) + len(result.errors)
    print(f"chart: {result.testsRun - failed} passed, {failed} failed")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
