"""What particular values render, and which values the schema refuses."""

from __future__ import annotations

import hashlib
import unittest

import helm
from chart import (
    FULLNAME,
    OPERATOR_ACCOUNT,
    WORKER_ACCOUNT,
    container,
    env_of,
    render,
    rendered,
    schema_messages,
)

API = FULLNAME
OPERATOR = f"{FULLNAME}-operator"
WORKER = f"{FULLNAME}-worker"
CONFIG = f"{FULLNAME}-config"


def config(r: helm.Rendered) -> dict:
    return r.one("ConfigMap", CONFIG)["data"]


class Scheduling(unittest.TestCase):
    def test_with_the_operator_the_api_keeps_reminders_as_resources_the_operator_runs(self):
        r = rendered("defaults")
        self.assertEqual(config(r)["BORCELLE_SCHEDULER"], "kubernetes")
        r.one("Deployment", OPERATOR)

    def test_without_the_operator_the_api_schedules_in_process(self):
        r = rendered("no operator")
        self.assertEqual(config(r)["BORCELLE_SCHEDULER"], "in-process")
        self.assertEqual([d["metadata"]["name"] for d in r.of_kind("Deployment")], [API])
        self.assertEqual([d["metadata"]["name"] for d in r.of_kind("ServiceAccount")], [API])

    def test_scheduler_in_process_keeps_the_standalone_scheduler_next_to_the_operator(self):
        r = rendered("scheduler in-process")
        self.assertEqual(config(r)["BORCELLE_SCHEDULER"], "in-process")
        r.one("Deployment", OPERATOR)

    def test_scheduler_off_is_passed_as_is(self):
        self.assertEqual(config(render({"scheduler": "off"}))["BORCELLE_SCHEDULER"], "off")

    def test_only_an_api_that_keeps_resources_in_the_cluster_gets_a_token(self):
        for scenario, token in (("defaults", True), ("scheduler in-process", False), ("no operator", False)):
            r = rendered(scenario)
            with self.subTest(scenario=scenario):
                self.assertIs(r.one("ServiceAccount", API)["automountServiceAccountToken"], token)
                pod = r.one("Deployment", API)["spec"]["template"]["spec"]
                self.assertIs(pod["automountServiceAccountToken"], token)


class Operator(unittest.TestCase):
    def test_the_operator_hands_its_jobs_the_releases_secret_configmap_account_and_image(self):
        r = rendered("defaults")
        env = env_of(container(r, OPERATOR))
        self.assertEqual(env["BORCELLE_WORKER_ENV_SECRET"], "borcelle-env")
        self.assertEqual(env["BORCELLE_WORKER_ENV_CONFIGMAP"], CONFIG)
        self.assertEqual(env["BORCELLE_WORKER_SERVICE_ACCOUNT"], WORKER_ACCOUNT)
        self.assertIs(r.one("ServiceAccount", WORKER_ACCOUNT)["automountServiceAccountToken"], False)
        self.assertEqual(env["BORCELLE_WORKER_IMAGE"], container(r, API)["image"])
        self.assertEqual(env["POD_NAME"], {"fieldRef": {"fieldPath": "metadata.name"}})
        self.assertEqual(env["POD_NAMESPACE"], {"fieldRef": {"fieldPath": "metadata.namespace"}})
        self.assertNotIn("BORCELLE_OPERATOR_NAMESPACE", env)

    def test_two_replicas_elect_a_leader_through_the_lease_their_role_names(self):
        r = rendered("defaults")
        deployment = r.one("Deployment", OPERATOR)
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        self.assertEqual(deployment["spec"]["replicas"], 2)
        self.assertEqual(env["BORCELLE_LEADER_ELECTION"], "true")
        role = r.one("Role", f"{OPERATOR}-leader-election")
        self.assertEqual(role["rules"][1]["resourceNames"], [env["BORCELLE_LEASE_NAME"]])
        self.assertEqual(deployment["spec"]["template"]["spec"]["serviceAccountName"], OPERATOR_ACCOUNT)

    def test_the_operator_is_probed_on_its_health_port(self):
        c = container(rendered("defaults"), OPERATOR)
        self.assertEqual(c["ports"], [{"name": "http", "containerPort": 8081, "protocol": "TCP"}])
        self.assertEqual(env_of(c)["BORCELLE_OPERATOR_LISTEN"], "0.0.0.0:8081")
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})

    def test_an_operator_watching_one_namespace_is_told_so(self):
        r = rendered("operator watching one namespace")
        self.assertEqual(env_of(container(r, OPERATOR))["BORCELLE_OPERATOR_NAMESPACE"], "crm")
        self.assertEqual(r.one("Role", OPERATOR)["metadata"]["namespace"], "crm")
        self.assertEqual(r.of_kind("ClusterRole") + r.of_kind("ClusterRoleBinding"), [])


class Delivery(unittest.TestCase):
    def test_separate_workers_turn_the_apis_own_delivery_off(self):
        r = rendered("values-production.yaml")
        self.assertEqual(env_of(container(r, API))["BORCELLE_SERVE_DELIVERY"], "false")
        worker = r.one("Deployment", WORKER)
        self.assertEqual(worker["spec"]["replicas"], 2)
        self.assertEqual(worker["spec"]["template"]["spec"]["containers"][0]["args"], ["worker"])
        self.assertEqual(worker["spec"]["template"]["spec"]["serviceAccountName"], WORKER_ACCOUNT)

    def test_without_workers_the_api_sends_the_mail(self):
        r = rendered("defaults")
        self.assertEqual(env_of(container(r, API))["BORCELLE_SERVE_DELIVERY"], "true")
        self.assertNotIn(WORKER, [d["metadata"]["name"] for d in r.of_kind("Deployment")])


class Storage(unittest.TestCase):
    def test_local_storage_is_a_writable_volume_at_the_storage_dir(self):
        r = rendered("defaults")
        pod = r.one("Deployment", API)["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        volume = mounts[config(r)["BORCELLE_STORAGE_DIR"]]
        self.assertIn("emptyDir", {v["name"]: v for v in pod["volumes"]}[volume])
        self.assertEqual(pod["securityContext"]["fsGroup"], 65532)
        self.assertEqual(config(r)["BORCELLE_STORAGE"], "local")

    def test_s3_storage_is_configured_without_credentials_in_the_configmap(self):
        r = rendered("values-production.yaml")
        data = config(r)
        self.assertEqual(data["BORCELLE_STORAGE"], "s3")
        self.assertEqual(data["BORCELLE_S3_BUCKET"], "example-borcelle-attachments")
        self.assertEqual(data["BORCELLE_S3_REGION"], "eu-west-1")
        self.assertEqual(data["BORCELLE_S3_PATH_STYLE"], "false")
        self.assertNotIn("BORCELLE_STORAGE_DIR", data)
        self.assertFalse([k for k in data if "SECRET" in k or "PASSWORD" in k or "KEY" in k], data)


class Production(unittest.TestCase):
    def test_production_values_publish_the_ui_over_tls_and_send_through_smtp(self):
        r = rendered("values-production.yaml")
        ingress = r.one("Ingress", API)
        self.assertEqual(ingress["spec"]["tls"], [{"secretName": "borcelle-tls", "hosts": ["crm.example.com"]}])
        self.assertEqual(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
                         {"name": API, "port": {"name": "http"}})
        data = config(r)
        self.assertEqual(data["BORCELLE_PUBLIC_URL"], "https://crm.example.com")
        self.assertEqual((data["BORCELLE_MAIL_TRANSPORT"], data["BORCELLE_SMTP_HOST"], data["BORCELLE_SMTP_PORT"],
                          data["BORCELLE_SMTP_TLS"]), ("smtp", "smtp.example.com", "587", "starttls"))

    def test_production_values_monitor_restrict_and_budget_every_component(self):
        r = rendered("values-production.yaml")
        self.assertEqual(sorted(d["metadata"]["name"] for d in r.of_kind("ServiceMonitor")), [API, OPERATOR])
        self.assertEqual(len(r.of_kind("NetworkPolicy")), 3)
        budgets = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in r.of_kind("PodDisruptionBudget")}
        self.assertEqual(budgets, {"api", "worker", "operator"})
        for d in r.of_kind("Deployment"):
            resources = d["spec"]["template"]["spec"]["containers"][0]["resources"]
            self.assertTrue(resources["requests"] and resources["limits"]["memory"], d["metadata"]["name"])

    def test_the_public_url_follows_the_ingress_host_when_unset(self):
        r = render({"ingress": {"enabled": True, "tls": [{"secretName": "t", "hosts": ["crm.example.com"]}]}})
        self.assertEqual(config(r)["BORCELLE_PUBLIC_URL"], "https://crm.example.com")


class Rollout(unittest.TestCase):
    def test_a_settings_change_rolls_the_pods(self):
        def checksum(r):
            return r.one("Deployment", API)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

        before = rendered("defaults")
        after = render({"mail": {"from": "crm@example.com"}})
        self.assertNotEqual(checksum(before), checksum(after))
        self.assertEqual(checksum(after), hashlib.sha256(after.files["configmap.yaml"].encode()).hexdigest())

    def test_migrations_run_as_a_hook_that_needs_only_the_secret(self):
        job = rendered("defaults").one("Job", f"{FULLNAME}-migrate")
        self.assertEqual(job["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade")
        c = job["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["envFrom"], [{"secretRef": {"name": "borcelle-env"}}])


class Notes(unittest.TestCase):
    def test_the_notes_tell_how_to_reach_the_ui_and_create_the_first_admin(self):
        notes = rendered("defaults").files["NOTES.txt"]
        self.assertIn(f"port-forward svc/{API} 8080:80", notes)
        self.assertIn(f"exec -i deploy/{API} -- \\\n    borcelle admin create-user --email you@example.com --admin", notes)
        self.assertIn("BORCELLE_ADMIN_PASSWORD", notes)
        self.assertIn("https://crm.example.com/", rendered("values-production.yaml").files["NOTES.txt"])


# Values the schema must refuse: (why, overrides).
REFUSED = [
    ("a string for replicaCount", {"replicaCount": "two"}),
    ("a negative replica count", {"replicaCount": -1}),
    ("an unknown mail transport", {"mail": {"transport": "carrier-pigeon"}}),
    ("a string for worker.replicaCount", {"worker": {"replicaCount": "2"}}),
    ("a negative operator.replicaCount", {"operator": {"replicaCount": -2}}),
    ("an unknown log format", {"logFormat": "xml"}),
    ("an unknown scheduler", {"scheduler": "cron"}),
    ("a misspelt key", {"replicas": 3}),
    ("an SMTP port out of range", {"mail": {"smtp": {"port": 70000}}}),
    ("no existingSecret", {"existingSecret": ""}),
    ("workers with local storage", {"worker": {"enabled": True}}),
    ("two API replicas with local storage", {"replicaCount": 2}),
    ("s3 without a bucket", {"storage": {"backend": "s3"}}),
    ("two operators without leader election", {"operator": {"leaderElection": False}}),
    ("scheduler kubernetes without the operator", {"scheduler": "kubernetes", "operator": {"enabled": False}}),
    ("an API keeping resources in the cluster without its own account", {"serviceAccount": {"create": False}}),
]


class Schema(unittest.TestCase):
    def test_wrong_values_fail_the_lint(self):
        for why, overrides in REFUSED:
            with self.subTest(why):
                r = render(overrides)
                errors = [m for m in r.lint if m.severity == 3 and m.path == "values.yaml"]
                self.assertTrue(errors, f"helm lint accepted {overrides}: {[str(m) for m in r.lint]}")

    def test_the_schema_explains_each_refusal(self):
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            self.skipTest("jsonschema is not installed (helm's lint above still refuses the values)")
        for why, overrides in REFUSED:
            with self.subTest(why):
                self.assertTrue(schema_messages(helm.merge(helm.default_values(), overrides)))
