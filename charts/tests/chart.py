"""The intended RBAC table, the sets of values the checks render, and helpers the checks share."""

from __future__ import annotations

import json
from functools import lru_cache

import helm
import rules

# Helm's lint renders the chart as release "test-release" with an empty namespace.
FULLNAME = "test-release-borcelle"
RELEASE_NAMESPACE = ""
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
# The admission webhook with the operator's own certificate (operator/src/webhook.rs): GET its
# Secret, CREATE it when missing; GET the webhook configuration and PUT it back with the CA.
WEBHOOK_SECRET = f"{FULLNAME}-operator-webhook-tls"
WEBHOOK_CONFIGURATION = f"{FULLNAME}-operator"
WEBHOOK_SECRET_RULES = [
    ("", "secrets", "create"),
    ("", "secrets", "get", WEBHOOK_SECRET),
]
WEBHOOK_CONFIGURATION_RULES = [
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "get update", WEBHOOK_CONFIGURATION),
]
OPERATOR_ACCOUNT = f"{FULLNAME}-operator"
API_ACCOUNT = FULLNAME
WORKER_ACCOUNT = f"{FULLNAME}-worker"
INBOUND_ACCOUNT = f"{FULLNAME}-inbound"

# Deployments without probes, and why (rules.probe_problems also requires them to listen nowhere).
PROBE_EXEMPT: dict[str, str] = {}

PRODUCTION = helm.load_values_file(helm.CHART / "values-production.yaml")
# The Prometheus Operator's kind: the chart renders its ServiceMonitors only on a cluster that serves it.
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
# cert-manager's kind: with it (operator.webhook.certManager auto), it issues the webhook's certificate.
CERT_MANAGER_API = "cert-manager.io/v1/Certificate"
SCENARIOS = {
    "defaults": {},
    "values-production.yaml": PRODUCTION,
    "values-production.yaml without the Prometheus Operator": PRODUCTION,
    "operator watching one namespace": {"operator": {"watchNamespace": "crm"}},
    "scheduler in-process": {"scheduler": "in-process"},
    "no operator": {"operator": {"enabled": False}},
    "one operator without leader election": {"operator": {"replicaCount": 1, "leaderElection": False}},
    "webhook with cert-manager": {},
    "webhook with cert-manager asked for": {"operator": {"webhook": {"certManager": {"enabled": True}}}},
    "webhook without cert-manager although served": {"operator": {"webhook": {"certManager": {"enabled": False}}}},
    "no webhook": {"operator": {"webhook": {"enabled": False}}, "networkPolicy": {"enabled": True}},
    # The inbound SMTP receiver with its defaults (a ClusterIP Service), beside the API alone; the
    # production values run it behind a LoadBalancer with TLS and workers.
    "inbound": {
        "storage": {"backend": "s3", "s3": {"bucket": "borcelle"}},
        "inbound": {"enabled": True, "domain": "replies.example.com"},
        "networkPolicy": {"enabled": True},
    },
}
# APIs beyond the built-in ones that the cluster of a scenario serves (helm.render's api_versions).
# The production values' ingress has cert-manager issue its certificate: that cluster serves it.
SCENARIO_APIS = {
    "values-production.yaml": [SERVICE_MONITOR_API, CERT_MANAGER_API],
    "webhook with cert-manager": [CERT_MANAGER_API],
    "webhook without cert-manager although served": [CERT_MANAGER_API],
}


def scheduler_mode(values: dict) -> str:
    """BORCELLE_SCHEDULER of the API for these values (what the chart's "auto" means)."""
    if values["scheduler"] == "auto":
        return "kubernetes" if values["operator"]["enabled"] else "in-process"
    return values["scheduler"]


def webhook_mode(values: dict, api_versions: list[str] | tuple[str, ...] = ()) -> str:
    """How the operator's admission webhook gets its certificate for these values on a cluster that
    serves `api_versions`: "cert-manager", "own" (the operator's Secret), or "" (no webhook)."""
    operator = values["operator"]
    if not (operator["enabled"] and operator["webhook"]["enabled"]):
        return ""
    cert_manager = operator["webhook"]["certManager"]["enabled"]
    if cert_manager is True or (cert_manager == "auto" and CERT_MANAGER_API in api_versions):
        return "cert-manager"
    return "own"


def expected_rbac(values: dict, api_versions: list[str] | tuple[str, ...] = ()) -> tuple[dict, dict]:
    """The roles the values should render on a cluster serving `api_versions`, as
    {role key: atoms}, and {role key: bound account}."""
    roles, accounts = {}, {}
    operator = values["operator"]
    if operator["enabled"]:
        namespace = operator["watchNamespace"]
        key = ("Role" if namespace else "ClusterRole", namespace, f"{FULLNAME}-operator")
        roles[key], accounts[key] = rules.table_atoms(OPERATOR_RULES), OPERATOR_ACCOUNT
        if operator["leaderElection"]:
            key = ("Role", "", f"{FULLNAME}-operator-leader-election")
            roles[key], accounts[key] = rules.table_atoms(LEADER_ELECTION_RULES), OPERATOR_ACCOUNT
        if webhook_mode(values, api_versions) == "own":
            # In the release namespace, and cluster-wide for the cluster-scoped configuration.
            key = ("Role", "", f"{FULLNAME}-operator-webhook")
            roles[key], accounts[key] = rules.table_atoms(WEBHOOK_SECRET_RULES), OPERATOR_ACCOUNT
            key = ("ClusterRole", "", f"{FULLNAME}-operator-webhook")
            roles[key], accounts[key] = rules.table_atoms(WEBHOOK_CONFIGURATION_RULES), OPERATOR_ACCOUNT
    if scheduler_mode(values) == "kubernetes":
        key = ("Role", "", FULLNAME)
        roles[key], accounts[key] = rules.table_atoms(API_KUBERNETES_SCHEDULER_RULES), API_ACCOUNT
    return roles, accounts


@lru_cache(maxsize=None)
def rendered(scenario: str) -> helm.Rendered:
    return helm.render(SCENARIOS[scenario], SCENARIO_APIS.get(scenario, ()))


def render(overrides: dict, api_versions: list[str] | tuple[str, ...] = (), lookups: dict | None = None) -> helm.Rendered:
    return helm.render(overrides, api_versions, lookups)


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
