"""Checks of rendered manifests: pure functions from parsed documents to a list of problems
(empty when all is well), so that each can be proven to fail on a bad input."""

from __future__ import annotations

from typing import Any, Iterable

Doc = dict[str, Any]
# One permission: (apiGroup, resource, verb, resourceName or "" for every name).
Atom = tuple[str, str, str, str]
# A role: (kind, namespace or "", name).
RoleKey = tuple[str, str, str]

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet")


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# ---- RBAC -------------------------------------------------------------------------------------


def atoms(rules: Iterable[dict[str, Any]]) -> set[Atom]:
    """Every (group, resource, verb, resourceName) a list of PolicyRules grants."""
    out: set[Atom] = set()
    for rule in rules or []:
        if rule.get("nonResourceURLs"):
            out.add(("<nonResourceURLs>", ",".join(rule["nonResourceURLs"]), ",".join(rule.get("verbs", [])), ""))
            continue
        names = rule.get("resourceNames") or [""]
        for group in rule.get("apiGroups") or ["<missing apiGroups>"]:
            for resource in rule.get("resources") or ["<missing resources>"]:
                for verb in rule.get("verbs") or ["<missing verbs>"]:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


def table_atoms(rows: Iterable[tuple]) -> set[Atom]:
    """Atoms of table rows (apiGroup, resource, "verb verb ...") or (..., resourceName)."""
    out: set[Atom] = set()
    for row in rows:
        group, resource, verbs = row[:3]
        name = row[3] if len(row) > 3 else ""
        out.update((group, resource, verb, name) for verb in verbs.split())
    return out


def rendered_roles(docs: Iterable[Doc]) -> dict[RoleKey, set[Atom]]:
    return {
        (d["kind"], d["metadata"].get("namespace") or "", d["metadata"]["name"]): atoms(d.get("rules"))
        for d in docs
        if d.get("kind") in ("Role", "ClusterRole")
    }


def rbac_diff(expected: dict[RoleKey, set[Atom]], actual: dict[RoleKey, set[Atom]]) -> list[str]:
    """What differs between the intended roles and the rendered ones, permission by permission."""
    problems = []
    for key in sorted(actual.keys() - expected.keys()):
        problems.append(f"unexpected {key[0]} {key[2]!r} (namespace {key[1]!r}) granting {sorted(actual[key])}")
    for key in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing {key[0]} {key[2]!r} (namespace {key[1]!r})")
    for key in sorted(expected.keys() & actual.keys()):
        for atom in sorted(actual[key] - expected[key]):
            problems.append(f"{key[0]} {key[2]!r} grants more than intended: {_show(atom)}")
        for atom in sorted(expected[key] - actual[key]):
            problems.append(f"{key[0]} {key[2]!r} lacks an intended permission: {_show(atom)}")
    for key, granted in actual.items():
        for atom in granted:
            if "*" in atom[:3]:
                problems.append(f"{key[0]} {key[2]!r} uses a wildcard: {_show(atom)}")
    return problems


# Resources whose every object a role must name (resourceNames), and the verbs allowed without a
# name all the same: creating a Secret reads none (and create cannot be limited to a name).
NAMED_ONLY = {
    ("", "secrets"): {"create"},
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): set(),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): set(),
}
# Verbs that reach every object of a resource, resourceNames or not.
EVERY_OBJECT_VERBS = {"list", "watch", "deletecollection"}


def least_privilege_problems(actual: dict[RoleKey, set[Atom]]) -> list[str]:
    """No role lists, watches or reads Secrets (or webhook configurations) beyond the ones it
    names: the webhook's Secret and configuration are the only ones the operator may touch."""
    problems = []
    for key, granted in sorted(actual.items()):
        for atom in sorted(granted):
            group, resource, verb, name = atom
            unnamed_ok = _unnamed_verbs(group, resource)
            if unnamed_ok is None:
                continue
            if verb in EVERY_OBJECT_VERBS or verb == "*":
                problems.append(f"{key[0]} {key[2]!r} reaches every object: {_show(atom)}")
            elif not name and verb not in unnamed_ok:
                problems.append(f"{key[0]} {key[2]!r} is not limited to named objects: {_show(atom)}")
    return problems


def _unnamed_verbs(group: str, resource: str) -> set[str] | None:
    """The verbs allowed without a name on (group, resource) when it covers a NAMED_ONLY resource
    (none through a wildcard), None when it covers none."""
    if (group, resource) in NAMED_ONLY:
        return NAMED_ONLY[(group, resource)]
    if any(group in (g, "*") and resource in (r, "*") for g, r in NAMED_ONLY):
        return set()
    return None


def _show(atom: Atom) -> str:
    group, resource, verb, name = atom
    where = f"{group}/{resource}" if group else resource
    return f"{verb} {where}" + (f" (only {name!r})" if name else "")


def binding_problems(docs: list[Doc], accounts: dict[RoleKey, str]) -> list[str]:
    """Each binding refers to a rendered role and binds exactly the intended service account
    (`accounts`: role key -> account name); no role is left unbound."""
    roles = {(d["kind"], d["metadata"].get("namespace") or "", d["metadata"]["name"]) for d in docs
             if d.get("kind") in ("Role", "ClusterRole")}
    problems, bound = [], set()
    for b in (d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")):
        ref = b.get("roleRef", {})
        namespace = "" if ref.get("kind") == "ClusterRole" else b["metadata"].get("namespace") or ""
        key = (ref.get("kind"), namespace, ref.get("name"))
        if key not in roles:
            problems.append(f"{name_of(b)} refers to {key}, which the chart does not render")
            continue
        bound.add(key)
        subjects = [(s.get("kind"), s.get("name")) for s in b.get("subjects") or []]
        if subjects != [("ServiceAccount", accounts.get(key))]:
            problems.append(f"{name_of(b)} binds {subjects}, expected only ServiceAccount {accounts.get(key)!r}")
    problems += [f"{k[0]} {k[2]} is bound to nobody" for k in sorted(roles - bound)]
    return problems


# ---- pods -------------------------------------------------------------------------------------


def pod_specs(docs: Iterable[Doc]) -> list[tuple[Doc, Doc]]:
    """(workload, pod spec) of every rendered workload."""
    out = []
    for d in docs:
        kind = d.get("kind")
        if kind not in WORKLOADS:
            continue
        spec = d.get("spec", {})
        if kind == "Pod":
            out.append((d, spec))
        elif kind == "CronJob":
            out.append((d, spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})))
        else:
            out.append((d, spec.get("template", {}).get("spec", {})))
    return out


def security_problems(docs: Iterable[Doc]) -> list[str]:
    """Every container: non-root, read-only root file system, no privilege escalation, drops ALL
    capabilities and adds none, RuntimeDefault seccomp; no pod shares the host's namespaces."""
    problems = []
    for workload, pod in pod_specs(docs):
        psc = pod.get("securityContext") or {}
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host):
                problems.append(f"{name_of(workload)}: {host}")
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            where = f"{name_of(workload)} container {c.get('name')}"
            sc = c.get("securityContext") or {}

            def effective(key: str) -> Any:
                return sc[key] if key in sc else psc.get(key)

            if effective("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if effective("runAsUser") in (0, "0"):
                problems.append(f"{where}: runs as user 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root file system is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation is not disabled")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                problems.append(f"{where}: does not drop ALL capabilities")
            if caps.get("add"):
                problems.append(f"{where}: adds capabilities {caps['add']}")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccomp profile is not RuntimeDefault")
    return problems


def probe_problems(docs: Iterable[Doc], exempt: dict[str, str]) -> list[str]:
    """Every Deployment container has a liveness and a readiness probe, except the components
    in `exempt` (component -> reason), which must then not listen on any port either."""
    problems = []
    for workload, pod in pod_specs(d for d in docs if d.get("kind") == "Deployment"):
        component = workload["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
        for c in pod.get("containers") or []:
            where = f"{name_of(workload)} container {c.get('name')}"
            if component in exempt:
                if c.get("ports"):
                    problems.append(f"{where}: exempt from probes ({exempt[component]}) but listens on a port")
                continue
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    problems.append(f"{where}: no {probe}")
    return problems


def secret_problems(docs: Iterable[Doc]) -> list[str]:
    """No Secret carries data: credentials come from existingSecret, made outside the chart."""
    return [
        f"{name_of(d)} carries {key}"
        for d in docs
        if d.get("kind") == "Secret"
        for key in ("data", "stringData")
        if d.get(key)
    ]


def label_problems(docs: Iterable[Doc]) -> list[str]:
    return [
        f"{name_of(d)} lacks the label {label}"
        for d in docs
        for label in STANDARD_LABELS
        if label not in (d.get("metadata", {}).get("labels") or {})
    ]


def selector_problems(docs: list[Doc]) -> list[str]:
    """Services, PodDisruptionBudgets and NetworkPolicies select some rendered pods (the operator's
    occurrence Jobs are not rendered, so a NetworkPolicy may select only them)."""
    pods = [
        (workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {})
        for workload, _ in pod_specs(docs)
    ]
    problems = []
    for d in docs:
        kind = d.get("kind")
        if kind == "Service":
            selector = d["spec"].get("selector") or {}
        elif kind == "PodDisruptionBudget":
            selector = d["spec"].get("selector", {}).get("matchLabels") or {}
        elif kind == "NetworkPolicy":
            selector = d["spec"].get("podSelector", {}).get("matchLabels")
            if selector is None:
                continue
        else:
            continue
        if not selector:
            problems.append(f"{name_of(d)} selects every pod")
        elif not any(all(labels.get(k) == v for k, v in selector.items()) for labels in pods):
            problems.append(f"{name_of(d)} selects no rendered pod: {selector}")
    return problems


def metrics_problems(docs: list[Doc]) -> list[str]:
    """The API serves /metrics on a port of its own (`--operations-listen`, container port
    `metrics`), which its Service exposes and no Ingress routes to; every ServiceMonitor scrapes a
    port its Service has."""
    problems = []
    services = [d for d in docs if d.get("kind") == "Service"]
    for workload, pod in pod_specs(d for d in docs if d.get("kind") == "Deployment"):
        if workload["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "api":
            continue
        container = (pod.get("containers") or [{}])[0]
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        args = container.get("args") or []
        listen = args[args.index("--operations-listen") + 1] if "--operations-listen" in args else None
        if "metrics" not in ports:
            problems.append(f"{name_of(workload)}: no container port named metrics")
        elif listen is None or not listen.endswith(f":{ports['metrics']}"):
            problems.append(f"{name_of(workload)}: --operations-listen {listen} is not the metrics port {ports['metrics']}")
        if ports.get("metrics") == ports.get("http"):
            problems.append(f"{name_of(workload)}: metrics on the public port")
    for service in services:
        if service["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "api":
            if "metrics" not in [p.get("name") for p in service["spec"].get("ports") or []]:
                problems.append(f"{name_of(service)}: does not expose the metrics port")
    for ingress in (d for d in docs if d.get("kind") == "Ingress"):
        for rule in ingress["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                port = path.get("backend", {}).get("service", {}).get("port", {})
                if port.get("name") == "metrics" or port.get("number") not in (None, 80):
                    problems.append(f"{name_of(ingress)}: routes to {port}, not only the public port")
    for monitor in (d for d in docs if d.get("kind") == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if all(s["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        names = {p.get("name") for s in selected for p in s["spec"].get("ports") or []}
        for endpoint in monitor["spec"].get("endpoints") or []:
            if endpoint.get("port") not in names:
                problems.append(f"{name_of(monitor)}: scrapes port {endpoint.get('port')}, which {names} lacks")
    return problems


# ---- admission webhook ------------------------------------------------------------------------

# Namespaces a webhook that fails closed must never apply to: the cluster could not heal itself.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
WEBHOOK_PORT_NAME = "webhook"


def _excluded_namespaces(webhook: Doc) -> set[str]:
    out: set[str] = set()
    for expr in (webhook.get("namespaceSelector") or {}).get("matchExpressions") or []:
        if expr.get("key") == "kubernetes.io/metadata.name" and expr.get("operator") == "NotIn":
            out.update(expr.get("values") or [])
    return out


def webhook_problems(docs: list[Doc]) -> list[str]:
    """Each ValidatingWebhookConfiguration reaches the operator: every webhook calls, on port 443,
    a rendered Service whose port targets the operator container's `webhook` port; it takes v1
    reviews, has no side effects and never applies to the system namespaces. The operator is told
    the Service's and the configuration's names, and BORCELLE_WEBHOOK is set exactly when a
    configuration is rendered. With BORCELLE_WEBHOOK_CERT_DIR the directory is a read-only mount of
    a rendered Certificate's Secret, whose CA cert-manager injects into every configuration."""
    problems = []
    configurations = [d for d in docs if d.get("kind") == "ValidatingWebhookConfiguration"]
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    certificates = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Certificate"}
    operators = [
        (w, pod) for w, pod in pod_specs(d for d in docs if d.get("kind") == "Deployment")
        if w["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"
    ]
    called: set[str] = set()
    for configuration in configurations:
        where = name_of(configuration)
        for webhook in configuration.get("webhooks") or []:
            at = f"{where} webhook {webhook.get('name')}"
            if "v1" not in (webhook.get("admissionReviewVersions") or []):
                problems.append(f"{at}: does not take admission.k8s.io/v1 reviews")
            if webhook.get("sideEffects") not in ("None", "NoneOnDryRun"):
                problems.append(f"{at}: sideEffects {webhook.get('sideEffects')}")
            if missing := [ns for ns in SYSTEM_NAMESPACES if ns not in _excluded_namespaces(webhook)]:
                problems.append(f"{at}: applies to {missing}")
            target = (webhook.get("clientConfig") or {}).get("service") or {}
            if webhook.get("clientConfig", {}).get("url"):
                problems.append(f"{at}: calls a URL, not the operator's Service")
            service = services.get(target.get("name"))
            if service is None:
                problems.append(f"{at}: calls Service {target.get('name')}, which the chart does not render")
                continue
            called.add(service["metadata"]["name"])
            port = next((p for p in service["spec"].get("ports") or [] if p.get("port") == target.get("port", 443)), None)
            if target.get("port", 443) != 443 or port is None:
                problems.append(f"{at}: calls port {target.get('port', 443)}, which is not 443 on {name_of(service)}")
            elif port.get("targetPort") != WEBHOOK_PORT_NAME:
                problems.append(f"{name_of(service)}: port 443 targets {port.get('targetPort')}, not {WEBHOOK_PORT_NAME}")
            selector = service["spec"].get("selector") or {}
            selected = [pod for w, pod in operators
                        if selector and all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                                            for k, v in selector.items())]
            if not selected:
                problems.append(f"{name_of(service)}: selects no operator pod")
            for pod in selected:
                ports = [p.get("name") for c in pod.get("containers") or [] for p in c.get("ports") or []]
                if WEBHOOK_PORT_NAME not in ports:
                    problems.append(f"{name_of(service)}: the operator pods have no port {WEBHOOK_PORT_NAME}")
    for workload, pod in operators:
        for c in pod.get("containers") or []:
            where = f"{name_of(workload)} container {c.get('name')}"
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            if (env.get("BORCELLE_WEBHOOK") == "true") != bool(configurations):
                problems.append(f"{where}: BORCELLE_WEBHOOK is {env.get('BORCELLE_WEBHOOK')!r} with "
                                f"{len(configurations)} webhook configuration(s)")
            if not configurations:
                continue
            if env.get("BORCELLE_WEBHOOK_SERVICE") not in called:
                problems.append(f"{where}: BORCELLE_WEBHOOK_SERVICE {env.get('BORCELLE_WEBHOOK_SERVICE')!r} is not "
                                f"the Service the webhooks call {sorted(called)}")
            names = [d["metadata"]["name"] for d in configurations]
            if env.get("BORCELLE_WEBHOOK_CONFIGURATION") not in names:
                problems.append(f"{where}: BORCELLE_WEBHOOK_CONFIGURATION {env.get('BORCELLE_WEBHOOK_CONFIGURATION')!r} "
                                f"is none of {names}")
            cert_dir = env.get("BORCELLE_WEBHOOK_CERT_DIR")
            injected = {(d.get("metadata", {}).get("annotations") or {}).get("cert-manager.io/inject-ca-from")
                        for d in configurations}
            if not cert_dir:
                if certificates or injected != {None}:
                    problems.append(f"{where}: keeps its own certificate, yet cert-manager issues one")
                continue
            mount = next((m for m in c.get("volumeMounts") or [] if m.get("mountPath") == cert_dir), None)
            volume = next((v for v in pod.get("volumes") or [] if mount and v.get("name") == mount.get("name")), None)
            secret = ((volume or {}).get("secret") or {}).get("secretName")
            if mount is None or mount.get("readOnly") is not True:
                problems.append(f"{where}: BORCELLE_WEBHOOK_CERT_DIR {cert_dir} is not a read-only mount")
            issued = [name for name, cert in certificates.items() if cert["spec"].get("secretName") == secret]
            if not issued:
                problems.append(f"{where}: mounts Secret {secret!r} at {cert_dir}, which no Certificate issues")
            elif len(injected) != 1 or not str(next(iter(injected))).endswith(f"/{issued[0]}"):
                problems.append(f"{where}: the webhook configurations inject the CA of {sorted(map(str, injected))}, "
                                f"not of Certificate {issued[0]}")
    return problems


# ---- inbound SMTP receiver --------------------------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _port_of(address: Any) -> int | None:
    """The port of "host:port", None when there is none."""
    try:
        return int(str(address).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def inbound_problems(docs: list[Doc]) -> list[str]:
    """The inbound receiver is reachable, and alone: every Deployment that runs `borcelle inbound`
    listens (BORCELLE_INBOUND_LISTEN) on its container port `smtp` and serves /healthz, /readyz and
    /metrics (BORCELLE_INBOUND_HEALTH_LISTEN) on its port `health`, where its probes go; some
    Service selects its pods, and every Service that does sends only to `smtp` (the health port and
    its /metrics stay private); a NetworkPolicy that selects them opens `smtp` to every source
    (the public MX). The ConfigMap gives the inbound domain to every mail-sending pod exactly when
    such a Deployment is rendered, and the API then runs no receiver of its own
    (BORCELLE_INBOUND_IN_SERVE=false)."""
    problems = []
    deployments = pod_specs(d for d in docs if d.get("kind") == "Deployment")
    receivers = [(w, pod) for w, pod in deployments
                 if ((pod.get("containers") or [{}])[0].get("args") or [])[:1] == ["inbound"]]
    domains = [(d["data"] or {}).get("BORCELLE_INBOUND_DOMAIN") for d in docs
               if d.get("kind") == "ConfigMap" and "BORCELLE_INBOUND_DOMAIN" in (d.get("data") or {})]
    if bool(receivers) != bool(domains):
        problems.append(f"{len(receivers)} inbound receiver Deployment(s) but the ConfigMap's "
                        f"BORCELLE_INBOUND_DOMAIN is {domains or 'unset'}")
    for workload, pod in deployments:
        if workload["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "api":
            continue
        env = {e["name"]: e.get("value") for e in (pod.get("containers") or [{}])[0].get("env") or []}
        in_serve = env.get("BORCELLE_INBOUND_IN_SERVE")
        if receivers and in_serve != "false":
            problems.append(f"{name_of(workload)}: runs a receiver of its own beside the inbound Deployment "
                            f"(BORCELLE_INBOUND_IN_SERVE {in_serve!r})")
        if not receivers and in_serve is not None:
            problems.append(f"{name_of(workload)}: BORCELLE_INBOUND_IN_SERVE {in_serve!r} without an inbound Deployment")
    for workload, pod in receivers:
        container = pod["containers"][0]
        where = f"{name_of(workload)} container {container.get('name')}"
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        for variable, port in (("BORCELLE_INBOUND_LISTEN", "smtp"), ("BORCELLE_INBOUND_HEALTH_LISTEN", "health")):
            if port not in ports:
                problems.append(f"{where}: no container port named {port}")
            elif _port_of(env.get(variable)) != ports[port]:
                problems.append(f"{where}: {variable} {env.get(variable)!r} is not its port {port} ({ports[port]})")
        for probe in ("livenessProbe", "readinessProbe"):
            target = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
            if target not in ("health", ports.get("health")):
                problems.append(f"{where}: {probe} goes to port {target!r}, not health")
        labels = workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        services = [d for d in docs if d.get("kind") == "Service" and _matches(d["spec"].get("selector") or {}, labels)]
        if not services:
            problems.append(f"{name_of(workload)}: no Service selects the receiver's pods")
        for service in services:
            for port in service["spec"].get("ports") or []:
                if port.get("targetPort") not in ("smtp", ports.get("smtp")):
                    problems.append(f"{name_of(service)}: port {port.get('port')} goes to {port.get('targetPort')!r}, "
                                    f"not the receiver's smtp port")
        policies = [d for d in docs if d.get("kind") == "NetworkPolicy"
                    and _matches(d["spec"].get("podSelector", {}).get("matchLabels") or {}, labels)]
        for policy in policies:
            open_to_all = [rule for rule in policy["spec"].get("ingress") or []
                           if not rule.get("from") and any(p.get("port") in ("smtp", ports.get("smtp"))
                                                           for p in rule.get("ports") or [])]
            if not open_to_all:
                problems.append(f"{name_of(policy)}: the receiver's smtp port is not open to every source")
    return problems
