"""The intended RBAC table, the sets of values the checks render, and helpers the checks share."""

from __future__ import annotations

import json
from functools import lru_cache

import helm
import rules

# Helm's lint renders the chart as release "test-release" with an empty namespace.
FULLNAME = "test-release-borcelle"
CRM = "crm.borcelle.io"

# ---- The intended RBAC, exactly. A rule added to or removed from a template fails the checks. --
# (apiGroup, resource, verbs[, the only resourceName])
OPERATOR_RULES = [
    (CRM, "scheduledreminders", "get list watch"),
    (CRM, "broadcasts", "get list watch"),
    (CRM, "scheduledreminders/status", "get patch"),
    (CRM, "broadcasts/status", "get patch"),
    ("batch", "jobs", "create delete get list watch"),
    ("", "pods", "get list"),
    ("events.k8s.io", "events", "create patch"),
]
LEADER_ELECTION_RULES = [
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "get update", f"{FULLNAME}-operator"),
]
# The API with scheduler kubernetes (crm-api/src/cluster.rs: get, list, create, merge patch, delete).
API_KUBERNETES_SCHEDULER_RULES = [
    (CRM, "scheduledreminders", "get list create patch delete"),
    (CRM, "broadcasts", "get list create patch delete"),
]
OPERATOR_ACCOUNT = f"{FULLNAME}-operator"
API_ACCOUNT = FULLNAME
WORKER_ACCOUNT = f"{FULLNAME}-worker"

# Deployments without probes, and why (rules.probe_problems also requires them to listen nowhere).
PROBE_EXEMPT: dict[str, str] = {}

PRODUCTION = helm.load_values_file(helm.CHART / "values-production.yaml")
SCENARIOS = {
    "defaults": {},
    "values-production.yaml": PRODUCTION,
    "operator watching one namespace": {"operator": {"watchNamespace": "crm"}},
    "scheduler in-process": {"scheduler": "in-process"},
    "no operator": {"operator": {"enabled": False}},
    "one operator without leader election": {"operator": {"replicaCount": 1, "leaderElection": False}},
}


def scheduler_mode(values: dict) -> str:
    """BORCELLE_SCHEDULER of the API for these values (what the chart's "auto" means)."""
    if values["scheduler"] == "auto":
        return "kubernetes" if values["operator"]["enabled"] else "in-process"
    return values["scheduler"]


def expected_rbac(values: dict) -> tuple[dict, dict]:
    """The roles the values should render, as {role key: atoms}, and {role key: bound account}."""
    roles, accounts = {}, {}
    operator = values["operator"]
    if operator["enabled"]:
        namespace = operator["watchNamespace"]
        key = ("Role" if namespace else "ClusterRole", namespace, f"{FULLNAME}-operator")
        roles[key], accounts[key] = rules.table_atoms(OPERATOR_RULES), OPERATOR_ACCOUNT
        if operator["leaderElection"]:
            key = ("Role", "", f"{FULLNAME}-operator-leader-election")
            roles[key], accounts[key] = rules.table_atoms(LEADER_ELECTION_RULES), OPERATOR_ACCOUNT
    if scheduler_mode(values) == "kubernetes":
        key = ("Role", "", FULLNAME)
        roles[key], accounts[key] = rules.table_atoms(API_KUBERNETES_SCHEDULER_RULES), API_ACCOUNT
    return roles, accounts


@lru_cache(maxsize=None)
def rendered(scenario: str) -> helm.Rendered:
    return helm.render(SCENARIOS[scenario])


def render(overrides: dict) -> helm.Rendered:
    return helm.render(overrides)


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def container(r: helm.Rendered, deployment: str) -> dict:
    return r.one("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def schema_messages(values: dict) -> str:
    """The JSON-schema errors of `values`, as text (helm-sdkpy's lint gives none), when the
    jsonschema package is there."""
    try:
        import jsonschema
    except ImportError:
        return ""
    schema = json.loads((helm.CHART / "values.schema.json").read_text())
    errors = jsonschema.Draft7Validator(schema).iter_errors(values)
    return "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors)
