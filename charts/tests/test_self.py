"""Proof that the rule checks fail when they should: each one is fed a rendered chart with one
deliberate fault and must report exactly that fault."""

from __future__ import annotations

import copy
import unittest

import helm
import rules
from chart import FULLNAME, OPERATOR_RULES, PROBE_EXEMPT, expected_rbac, rendered

OPERATOR = f"{FULLNAME}-operator"


def docs() -> list[dict]:
    return copy.deepcopy(rendered("defaults").documents())


def find(documents: list[dict], kind: str, name: str) -> dict:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def api_container(documents: list[dict]) -> dict:
    return find(documents, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]


def rbac_problems(documents: list[dict]) -> list[str]:
    expected, _ = expected_rbac(rendered("defaults").values)
    return rules.rbac_diff(expected, rules.rendered_roles(documents))


class RbacCheckFails(unittest.TestCase):
    def test_the_unchanged_chart_passes(self):
        self.assertEqual(rbac_problems(docs()), [])

    def test_on_one_extra_verb(self):
        d = docs()
        jobs = next(r for r in find(d, "ClusterRole", OPERATOR)["rules"] if r["resources"] == ["jobs"])
        jobs["verbs"].append("deletecollection")
        self.assertEqual(rbac_problems(d), [f"ClusterRole {OPERATOR!r} grants more than intended: deletecollection batch/jobs"])

    def test_on_one_missing_verb(self):
        d = docs()
        pods = next(r for r in find(d, "ClusterRole", OPERATOR)["rules"] if r["resources"] == ["pods"])
        pods["verbs"].remove("list")
        self.assertEqual(rbac_problems(d), [f"ClusterRole {OPERATOR!r} lacks an intended permission: list pods"])

    def test_on_one_extra_resource(self):
        d = docs()
        find(d, "ClusterRole", OPERATOR)["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
        self.assertEqual(rbac_problems(d), [f"ClusterRole {OPERATOR!r} grants more than intended: get secrets"])

    def test_on_a_lease_rule_no_longer_limited_to_its_lease(self):
        d = docs()
        del find(d, "Role", f"{OPERATOR}-leader-election")["rules"][1]["resourceNames"]
        problems = rbac_problems(d)
        self.assertIn(f"Role '{OPERATOR}-leader-election' grants more than intended: update coordination.k8s.io/leases", problems)

    def test_on_a_wildcard(self):
        d = docs()
        find(d, "ClusterRole", OPERATOR)["rules"][0]["verbs"] = ["*"]
        self.assertTrue([p for p in rbac_problems(d) if "uses a wildcard" in p])

    def test_on_an_unexpected_role(self):
        d = docs()
        d.append({"kind": "ClusterRole", "metadata": {"name": "extra"}, "rules": []})
        self.assertEqual(rbac_problems(d), ["unexpected ClusterRole 'extra' (namespace '') granting []"])

    def test_on_a_table_that_no_longer_matches_the_templates(self):
        expected, _ = expected_rbac(rendered("defaults").values)
        key = ("ClusterRole", "", OPERATOR)
        expected[key] = rules.table_atoms(OPERATOR_RULES + [("batch", "jobs", "patch")])
        problems = rules.rbac_diff(expected, rules.rendered_roles(docs()))
        self.assertEqual(problems, [f"ClusterRole {OPERATOR!r} lacks an intended permission: patch batch/jobs"])

    def test_on_a_binding_to_another_account(self):
        d = docs()
        find(d, "ClusterRoleBinding", OPERATOR)["subjects"][0]["name"] = "default"
        _, accounts = expected_rbac(rendered("defaults").values)
        self.assertEqual(rules.binding_problems(d, accounts), [
            f"ClusterRoleBinding/{OPERATOR} binds [('ServiceAccount', 'default')], expected only ServiceAccount {OPERATOR!r}"
        ])


class LeastPrivilegeCheckFails(unittest.TestCase):
    def problems(self, d: list[dict]) -> list[str]:
        return rules.least_privilege_problems(rules.rendered_roles(d))

    def test_the_unchanged_chart_passes(self):
        self.assertEqual(self.problems(docs()), [])

    def test_on_listing_or_watching_secrets(self):
        for verb in ("list", "watch"):
            with self.subTest(verb):
                d = docs()
                find(d, "Role", f"{OPERATOR}-webhook")["rules"][1]["verbs"].append(verb)
                self.assertEqual(self.problems(d), [
                    f"Role '{OPERATOR}-webhook' reaches every object: {verb} secrets (only '{FULLNAME}-operator-webhook-tls')"
                ])

    def test_on_reading_every_secret(self):
        d = docs()
        del find(d, "Role", f"{OPERATOR}-webhook")["rules"][1]["resourceNames"]
        self.assertEqual(self.problems(d), [f"Role '{OPERATOR}-webhook' is not limited to named objects: get secrets"])

    def test_on_updating_every_webhook_configuration(self):
        d = docs()
        del find(d, "ClusterRole", f"{OPERATOR}-webhook")["rules"][0]["resourceNames"]
        self.assertEqual(self.problems(d), [
            f"ClusterRole '{OPERATOR}-webhook' is not limited to named objects: get admissionregistration.k8s.io/validatingwebhookconfigurations",
            f"ClusterRole '{OPERATOR}-webhook' is not limited to named objects: update admissionregistration.k8s.io/validatingwebhookconfigurations",
        ])

    def test_on_a_wildcard_resource_that_covers_secrets(self):
        d = docs()
        find(d, "ClusterRole", OPERATOR)["rules"].append({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]})
        self.assertEqual(self.problems(d), [f"ClusterRole {OPERATOR!r} is not limited to named objects: get *"])


def webhook_docs(scenario: str = "defaults") -> list[dict]:
    return copy.deepcopy(rendered(scenario).documents())


def operator_container(documents: list[dict]) -> dict:
    return find(documents, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]


class WebhookCheckFails(unittest.TestCase):
    CONFIGURATION = f"ValidatingWebhookConfiguration/{OPERATOR}"

    def test_the_unchanged_chart_passes_in_both_certificate_modes(self):
        for scenario in ("defaults", "webhook with cert-manager", "no webhook"):
            with self.subTest(scenario):
                self.assertEqual(rules.webhook_problems(webhook_docs(scenario)), [])

    def test_on_a_service_port_that_targets_the_metrics_port(self):
        d = webhook_docs()
        find(d, "Service", f"{OPERATOR}-webhook")["spec"]["ports"][0]["targetPort"] = "http"
        self.assertEqual(rules.webhook_problems(d), [f"Service/{OPERATOR}-webhook: port 443 targets http, not webhook"] * 2)

    def test_on_an_operator_without_the_webhook_port(self):
        d = webhook_docs()
        c = operator_container(d)
        c["ports"] = [p for p in c["ports"] if p["name"] != "webhook"]
        self.assertEqual(rules.webhook_problems(d), [f"Service/{OPERATOR}-webhook: the operator pods have no port webhook"] * 2)

    def test_on_a_webhook_that_applies_to_kube_system(self):
        d = webhook_docs()
        webhook = find(d, "ValidatingWebhookConfiguration", OPERATOR)["webhooks"][1]
        webhook["namespaceSelector"]["matchExpressions"][0]["values"].remove("kube-system")
        self.assertEqual(rules.webhook_problems(d), [f"{self.CONFIGURATION} webhook broadcasts.crm.borcelle.io: applies to ['kube-system']"])

    def test_on_the_operator_told_another_service(self):
        d = webhook_docs()
        env = next(e for e in operator_container(d)["env"] if e["name"] == "BORCELLE_WEBHOOK_SERVICE")
        env["value"] = "borcelle-operator-webhook"
        problems = rules.webhook_problems(d)
        self.assertEqual(len(problems), 1)
        self.assertIn("BORCELLE_WEBHOOK_SERVICE 'borcelle-operator-webhook' is not the Service the webhooks call", problems[0])

    def test_on_the_webhook_served_without_a_configuration(self):
        d = [x for x in webhook_docs() if x["kind"] != "ValidatingWebhookConfiguration"]
        problems = rules.webhook_problems(d)
        self.assertEqual(problems, [f"Deployment/{OPERATOR} container operator: BORCELLE_WEBHOOK is 'true' with 0 webhook configuration(s)"])

    def test_on_a_cert_dir_mounting_a_secret_no_certificate_issues(self):
        d = webhook_docs("webhook with cert-manager")
        volume = find(d, "Deployment", OPERATOR)["spec"]["template"]["spec"]["volumes"][0]
        volume["secret"]["secretName"] = "elsewhere"
        problems = rules.webhook_problems(d)
        self.assertEqual(len(problems), 1)
        self.assertIn("mounts Secret 'elsewhere' at /etc/borcelle/webhook-tls, which no Certificate issues", problems[0])

    def test_on_a_ca_injected_from_another_certificate(self):
        d = webhook_docs("webhook with cert-manager")
        annotations = find(d, "ValidatingWebhookConfiguration", OPERATOR)["metadata"]["annotations"]
        annotations["cert-manager.io/inject-ca-from"] = "crm/other"
        problems = rules.webhook_problems(d)
        self.assertEqual(len(problems), 1)
        self.assertIn("inject the CA of ['crm/other']", problems[0])


class SecurityCheckFails(unittest.TestCase):
    def test_the_unchanged_chart_passes(self):
        self.assertEqual(rules.security_problems(docs()), [])

    def test_on_each_weakened_setting(self):
        faults = {
            "the root file system is writable": lambda sc: sc.update(readOnlyRootFilesystem=False),
            "privilege escalation is not disabled": lambda sc: sc.pop("allowPrivilegeEscalation"),
            "does not drop ALL capabilities": lambda sc: sc["capabilities"].update(drop=["NET_RAW"]),
            "adds capabilities ['NET_ADMIN']": lambda sc: sc["capabilities"].update(add=["NET_ADMIN"]),
            "runs as user 0": lambda sc: sc.update(runAsUser=0),
            "runAsNonRoot is not true": lambda sc: sc.update(runAsNonRoot=False),
            "privileged": lambda sc: sc.update(privileged=True),
        }
        for message, fault in faults.items():
            with self.subTest(message):
                d = docs()
                fault(api_container(d)["securityContext"])
                self.assertEqual(rules.security_problems(d), [f"Deployment/{FULLNAME} container api: {message}"])


class OtherChecksFail(unittest.TestCase):
    def test_secret_check_on_a_secret_with_data(self):
        d = docs()
        d.append({"kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"DATABASE_URL": "postgres://"}})
        d.append({"kind": "Secret", "metadata": {"name": "empty"}})
        self.assertEqual(rules.secret_problems(d), ["Secret/creds carries stringData"])

    def test_probe_check_on_a_missing_probe_and_on_an_exempt_container_that_listens(self):
        d = docs()
        del api_container(d)["readinessProbe"]
        worker = copy.deepcopy(find(d, "Deployment", FULLNAME))
        worker["metadata"]["name"] = "w"
        worker["metadata"]["labels"]["app.kubernetes.io/component"] = "worker"
        d.append(worker)
        exempt = {"worker": "a planted exemption"}
        self.assertEqual(rules.probe_problems(d, exempt), [
            f"Deployment/{FULLNAME} container api: no readinessProbe",
            f"Deployment/w container api: exempt from probes (a planted exemption) but listens on a port",
        ])

    def test_label_check_on_a_missing_label(self):
        d = docs()
        del find(d, "Service", FULLNAME)["metadata"]["labels"]["app.kubernetes.io/part-of"]
        self.assertEqual(rules.label_problems(d), [f"Service/{FULLNAME} lacks the label app.kubernetes.io/part-of"])

    def test_selector_check_on_a_service_that_selects_nothing(self):
        d = docs()
        find(d, "Service", FULLNAME)["spec"]["selector"]["app.kubernetes.io/component"] = "apj"
        self.assertEqual(len(rules.selector_problems(d)), 1)


class MetricsCheckFails(unittest.TestCase):
    def production(self) -> list[dict]:
        return copy.deepcopy(rendered("values-production.yaml").documents())

    def test_the_unchanged_chart_passes(self):
        self.assertEqual(rules.metrics_problems(self.production()), [])

    def test_on_metrics_served_on_the_public_port(self):
        d = self.production()
        container = api_container(d)
        container["args"] = ["serve", "--listen", "0.0.0.0:8080", "--operations-listen", "0.0.0.0:8080"]
        container["ports"] = [p for p in container["ports"] if p["name"] != "metrics"]
        self.assertEqual(rules.metrics_problems(d), [f"Deployment/{FULLNAME}: no container port named metrics"])

    def test_on_a_service_monitor_scraping_the_public_port(self):
        d = self.production()
        monitor = find(d, "ServiceMonitor", FULLNAME)
        monitor["spec"]["endpoints"][0]["port"] = "web"
        problems = rules.metrics_problems(d)
        self.assertEqual(len(problems), 1)
        self.assertIn("scrapes port web", problems[0])

    def test_on_an_ingress_to_the_metrics_port(self):
        d = self.production()
        ingress = next(x for x in d if x["kind"] == "Ingress")
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "metrics"}
        self.assertEqual(len(rules.metrics_problems(d)), 1)


INBOUND = f"{FULLNAME}-inbound"


class InboundCheckFails(unittest.TestCase):
    def inbound_docs(self) -> list[dict]:
        return copy.deepcopy(rendered("inbound").documents())

    def receiver(self, documents: list[dict]) -> dict:
        return find(documents, "Deployment", INBOUND)["spec"]["template"]["spec"]["containers"][0]

    def test_the_unchanged_chart_passes_with_and_without_the_receiver(self):
        for scenario in ("inbound", "values-production.yaml", "defaults"):
            with self.subTest(scenario):
                self.assertEqual(rules.inbound_problems(copy.deepcopy(rendered(scenario).documents())), [])

    def test_on_a_receiver_listening_elsewhere_than_its_smtp_port(self):
        d = self.inbound_docs()
        self.receiver(d)["ports"][0]["containerPort"] = 2526
        self.assertEqual(rules.inbound_problems(d), [
            f"Deployment/{INBOUND} container inbound: BORCELLE_INBOUND_LISTEN '0.0.0.0:2525' is not its port smtp (2526)"
        ])

    def test_on_a_probe_of_the_smtp_port(self):
        d = self.inbound_docs()
        self.receiver(d)["readinessProbe"]["httpGet"]["port"] = "smtp"
        self.assertEqual(rules.inbound_problems(d), [
            f"Deployment/{INBOUND} container inbound: readinessProbe goes to port 'smtp', not health"
        ])

    def test_on_a_service_that_exposes_the_health_port(self):
        d = self.inbound_docs()
        find(d, "Service", INBOUND)["spec"]["ports"].append({"name": "health", "port": 8083, "targetPort": "health"})
        self.assertEqual(rules.inbound_problems(d), [
            f"Service/{INBOUND}: port 8083 goes to 'health', not the receiver's smtp port"
        ])

    def test_on_no_service_for_the_receiver(self):
        d = [x for x in self.inbound_docs() if not (x["kind"] == "Service" and x["metadata"]["name"] == INBOUND)]
        self.assertEqual(rules.inbound_problems(d), [f"Deployment/{INBOUND}: no Service selects the receiver's pods"])

    def test_on_a_network_policy_that_closes_the_mx_to_the_internet(self):
        d = self.inbound_docs()
        rule = find(d, "NetworkPolicy", INBOUND)["spec"]["ingress"][0]
        rule["from"] = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "crm"}}}]
        self.assertEqual(rules.inbound_problems(d), [
            f"NetworkPolicy/{INBOUND}: the receiver's smtp port is not open to every source"
        ])

    def test_on_serve_running_a_receiver_of_its_own_beside_the_deployment(self):
        d = self.inbound_docs()
        c = api_container(d)
        c["env"] = [e for e in c["env"] if e["name"] != "BORCELLE_INBOUND_IN_SERVE"]
        self.assertEqual(rules.inbound_problems(d), [
            f"Deployment/{FULLNAME}: runs a receiver of its own beside the inbound Deployment (BORCELLE_INBOUND_IN_SERVE None)"
        ])

    def test_on_senders_that_do_not_know_the_domain(self):
        d = self.inbound_docs()
        del find(d, "ConfigMap", f"{FULLNAME}-config")["data"]["BORCELLE_INBOUND_DOMAIN"]
        self.assertEqual(rules.inbound_problems(d), [
            "1 inbound receiver Deployment(s) but the ConfigMap's BORCELLE_INBOUND_DOMAIN is unset"
        ])


class ApiVersionsFail(unittest.TestCase):
    def test_on_an_api_that_no_template_checks(self):
        # helm.render makes an API served by rewriting the templates' checks of it: a kind the
        # chart stopped checking would otherwise go unnoticed.
        with self.assertRaisesRegex(ValueError, r"example\.com/v1/Nothing"):
            helm.render({}, ["example.com/v1/Nothing"])

    def test_on_a_lookup_that_no_template_makes(self):
        # Likewise for the objects `lookup` is made to find.
        with self.assertRaisesRegex(ValueError, r"no template looks up \[\('v1', 'Secret'\)\]"):
            helm.render({}, lookups={("v1", "Secret"): {}})
