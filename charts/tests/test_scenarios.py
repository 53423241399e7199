"""Checks that hold for every set of values in chart.SCENARIOS."""

from __future__ import annotations

import hashlib
import unittest

import helm
import rules
from chart import (
    FULLNAME,
    INBOUND_ACCOUNT,
    PROBE_EXEMPT,
    SCENARIOS,
    WORKER_ACCOUNT,
    expected_rbac,
    rendered,
    schema_messages,
)


class EveryScenario(unittest.TestCase):
    """What holds for every set of values in SCENARIOS."""


    def test_the_chart_as_shipped_lints_without_error_or_warning(self):
        problems = [m for m in helm.lint_chart() if m.severity >= 2]
        self.assertEqual(problems, [], "helm lint charts/borcelle")

    def test_lint_reports_no_error_and_no_warning(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual([str(m) for m in r.problems], [], schema_messages(r.values) or r.log[-2000:])

    def test_every_template_renders_without_a_missing_value(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(sorted(r.files), helm.expected_files(), "a template did not render")
                self.assertEqual(r.missing_required, [])
                self.assertEqual(r.failures, [])

    def test_rbac_is_exactly_the_intended_table(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                expected, _ = expected_rbac(r.values, r.api_versions)
                self.assertEqual(rules.rbac_diff(expected, rules.rendered_roles(r.documents())), [])

    def test_no_role_lists_or_reads_secrets_or_webhook_configurations_it_does_not_name(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.least_privilege_problems(rules.rendered_roles(r.documents())), [])

    def test_each_role_is_bound_to_its_own_account_only(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                _, accounts = expected_rbac(r.values, r.api_versions)
                self.assertEqual(rules.binding_problems(r.documents(), accounts), [])

    def test_every_container_is_non_root_read_only_without_escalation_and_drops_all(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.security_problems(r.documents()), [])

    def test_no_secret_with_data_is_rendered(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.secret_problems(r.documents()), [])

    def test_every_deployment_has_readiness_and_liveness_probes(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.probe_problems(r.documents(), PROBE_EXEMPT), [])

    def test_every_object_carries_the_standard_labels(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.label_problems(r.documents()), [])

    def test_metrics_are_scraped_on_their_own_port_never_through_the_ingress(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.metrics_problems(r.documents()), [])

    def test_services_budgets_and_policies_select_rendered_pods(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.selector_problems(r.documents()), [])

    def test_the_admission_webhook_reaches_the_operator_and_spares_the_system_namespaces(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.webhook_problems(r.documents()), [])

    def test_the_inbound_receiver_is_reachable_on_its_smtp_port_and_alone(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                self.assertEqual(rules.inbound_problems(r.documents()), [])

    def test_pods_carry_the_checksum_of_the_rendered_configmap(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                digest = hashlib.sha256(r.files["configmap.yaml"].encode()).hexdigest()
                for d in r.of_kind("Deployment"):
                    if d["metadata"]["labels"]["app.kubernetes.io/component"] in ("api", "worker", "inbound"):
                        annotations = d["spec"]["template"]["metadata"]["annotations"]
                        self.assertEqual(annotations.get("checksum/config"), digest, rules.name_of(d))

    def test_borcelle_containers_read_the_existing_secret_then_the_configmap(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                config = f"{FULLNAME}-config"
                r.one("ConfigMap", config)
                for d in r.of_kind("Deployment"):
                    if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator":
                        continue
                    env_from = d["spec"]["template"]["spec"]["containers"][0]["envFrom"]
                    self.assertEqual(env_from, [{"secretRef": {"name": r.values["existingSecret"]}},
                                                {"configMapRef": {"name": config}}], rules.name_of(d))

    def test_the_worker_and_inbound_accounts_have_no_token_and_no_binding(self):
        for scenario in SCENARIOS:
            with self.subTest(scenario=scenario):
                r = rendered(scenario)
                subjects = [s["name"] for b in r.documents() if b["kind"].endswith("RoleBinding") for s in b["subjects"]]
                for name in (WORKER_ACCOUNT, INBOUND_ACCOUNT):
                    accounts = [a for a in r.of_kind("ServiceAccount") if a["metadata"]["name"] == name]
                    for account in accounts:
                        self.assertIs(account["automountServiceAccountToken"], False)
                    self.assertNotIn(name, subjects)
                for d in r.of_kind("Deployment"):
                    if d["metadata"]["labels"]["app.kubernetes.io/component"] == "inbound":
                        pod = d["spec"]["template"]["spec"]
                        self.assertEqual((pod["serviceAccountName"], pod["automountServiceAccountToken"]),
                                         (INBOUND_ACCOUNT, False))
