"""What particular values render, and which values the schema refuses."""

from __future__ import annotations

import hashlib
import unittest

import helm
import rules
from chart import (
    CERT_MANAGER_API,
    FULLNAME,
    INBOUND_ACCOUNT,
    OPERATOR_ACCOUNT,
    RELEASE_NAMESPACE,
    SERVICE_MONITOR_API,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_SECRET,
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
INBOUND = f"{FULLNAME}-inbound"
CONFIG = f"{FULLNAME}-config"
WEBHOOK_SERVICE = f"{FULLNAME}-operator-webhook"
WEBHOOKS = ["scheduledreminders.crm.borcelle.io", "broadcasts.crm.borcelle.io"]
SYSTEM_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease"]
VWC = ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")


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

    def test_the_operator_hands_its_jobs_the_image_pull_secrets_as_names_joined_by_commas(self):
        pull_secrets = [{"name": "a"}, {"name": "b"}]
        r = render({"imagePullSecrets": pull_secrets})
        self.assertEqual(env_of(container(r, OPERATOR))["BORCELLE_WORKER_IMAGE_PULL_SECRETS"], "a,b")
        for d in r.of_kind("Deployment") + r.of_kind("Job"):
            self.assertEqual(d["spec"]["template"]["spec"]["imagePullSecrets"], pull_secrets, d["metadata"]["name"])
        self.assertIn("imagePullSecrets a,b, which must exist in that namespace too", r.files["NOTES.txt"])

    def test_without_image_pull_secrets_the_operator_passes_none_to_its_jobs(self):
        r = rendered("defaults")
        self.assertNotIn("BORCELLE_WORKER_IMAGE_PULL_SECRETS", env_of(container(r, OPERATOR)))
        self.assertNotIn("imagePullSecrets", r.one("Deployment", OPERATOR)["spec"]["template"]["spec"])
        self.assertNotIn("imagePullSecrets", r.files["NOTES.txt"])

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
        self.assertEqual(c["ports"], [{"name": "http", "containerPort": 8081, "protocol": "TCP"},
                                      {"name": "webhook", "containerPort": 8443, "protocol": "TCP"}])
        self.assertEqual(env_of(c)["BORCELLE_OPERATOR_LISTEN"], "0.0.0.0:8081")
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})

    def test_an_operator_watching_one_namespace_is_told_so(self):
        r = rendered("operator watching one namespace")
        self.assertEqual(env_of(container(r, OPERATOR))["BORCELLE_OPERATOR_NAMESPACE"], "crm")
        self.assertEqual(r.one("Role", OPERATOR)["metadata"]["namespace"], "crm")
        # Nothing cluster-wide but the webhook's: its configuration is cluster-scoped.
        self.assertEqual([(d["kind"], d["metadata"]["name"]) for d in r.of_kind("ClusterRole") + r.of_kind("ClusterRoleBinding")],
                         [("ClusterRole", f"{OPERATOR}-webhook"), ("ClusterRoleBinding", f"{OPERATOR}-webhook")])
        self.assertEqual(r.one("ClusterRole", f"{OPERATOR}-webhook")["rules"], [{
            "apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [WEBHOOK_CONFIGURATION], "verbs": ["get", "update"],
        }])
        r = render({"operator": {"watchNamespace": "crm"}}, [CERT_MANAGER_API])
        self.assertEqual(r.of_kind("ClusterRole") + r.of_kind("ClusterRoleBinding"), [])


def webhook_configuration(r: helm.Rendered) -> dict:
    return r.one("ValidatingWebhookConfiguration", WEBHOOK_CONFIGURATION)


def webhooks(r: helm.Rendered) -> dict:
    return {w["name"]: w for w in webhook_configuration(r)["webhooks"]}


def operator_pod(r: helm.Rendered) -> dict:
    return r.one("Deployment", OPERATOR)["spec"]["template"]["spec"]


class Webhook(unittest.TestCase):
    def test_the_webhook_configuration_checks_both_kinds_on_create_and_update(self):
        r = rendered("defaults")
        self.assertEqual(list(webhooks(r)), WEBHOOKS)
        for resource in ("scheduledreminders", "broadcasts"):
            with self.subTest(resource):
                w = webhooks(r)[f"{resource}.crm.borcelle.io"]
                self.assertEqual(w["rules"], [{
                    "apiGroups": ["crm.borcelle.io"], "apiVersions": ["v1alpha1"], "resources": [resource],
                    "operations": ["CREATE", "UPDATE"], "scope": "Namespaced",
                }])
                self.assertEqual((w["admissionReviewVersions"], w["sideEffects"], w["matchPolicy"]), (["v1"], "None", "Equivalent"))
                self.assertEqual((w["failurePolicy"], w["timeoutSeconds"]), ("Fail", 5))
                # No caBundle: the operator writes it (nothing to keep without a cluster to look it up in).
                self.assertEqual(w["clientConfig"], {"service": {
                    "name": WEBHOOK_SERVICE, "namespace": RELEASE_NAMESPACE, "path": "/validate", "port": 443,
                }})
        self.assertNotIn("annotations", webhook_configuration(r)["metadata"])

    def test_the_selectors_spare_the_clusters_namespaces_and_the_apis_own_resources(self):
        def selectors(r):
            return [w["namespaceSelector"] for w in webhooks(r).values()]

        # The release namespace is checked (production watches only it); the API's own resources
        # are not, whatever namespace they are in: the API must not wait for the operator.
        api_written = {"matchExpressions": [{"key": "app.kubernetes.io/managed-by", "operator": "NotIn", "values": ["borcelle"]}]}
        for scenario in ("defaults", "values-production.yaml"):
            self.assertEqual([w["objectSelector"] for w in webhooks(rendered(scenario)).values()], [api_written] * 2)

        def not_in(names):
            return {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": names}]}

        self.assertEqual(selectors(rendered("defaults")), [not_in(SYSTEM_NAMESPACES)] * 2)
        r = render({"operator": {"webhook": {"excludeNamespaces": ["monitoring", "kube-system"]}}})
        self.assertEqual(selectors(r), [not_in(SYSTEM_NAMESPACES + ["monitoring"])] * 2)

    def test_failure_policy_and_timeout_follow_the_values(self):
        r = render({"operator": {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 10}}})
        self.assertEqual({(w["failurePolicy"], w["timeoutSeconds"]) for w in webhooks(r).values()}, {("Ignore", 10)})
        self.assertIn("failurePolicy Ignore", r.files["NOTES.txt"])

    def test_the_service_sends_port_443_to_the_operators_webhook_port(self):
        r = rendered("defaults")
        service = r.one("Service", WEBHOOK_SERVICE)
        self.assertEqual(service["spec"]["ports"], [{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
        self.assertEqual(service["spec"]["selector"], r.one("Deployment", OPERATOR)["spec"]["selector"]["matchLabels"])
        self.assertIn({"name": "webhook", "containerPort": 8443, "protocol": "TCP"}, container(r, OPERATOR)["ports"])
        # The operator's metrics Service stays as it was, and only it is scraped.
        self.assertEqual([p["name"] for p in r.one("Service", OPERATOR)["spec"]["ports"]], ["http"])
        production = rendered("values-production.yaml")
        monitor = production.one("ServiceMonitor", OPERATOR)["spec"]["selector"]["matchLabels"]
        labels = production.one("Service", WEBHOOK_SERVICE)["metadata"]["labels"]
        self.assertFalse(all(labels.get(k) == v for k, v in monitor.items()), "the ServiceMonitor selects the webhook Service")

    def test_the_operator_serves_the_webhook_with_a_certificate_of_its_own(self):
        r = rendered("defaults")
        env = env_of(container(r, OPERATOR))
        self.assertEqual({k: v for k, v in env.items() if k.startswith("BORCELLE_WEBHOOK")}, {
            "BORCELLE_WEBHOOK": "true",
            "BORCELLE_WEBHOOK_LISTEN": "0.0.0.0:8443",
            "BORCELLE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BORCELLE_WEBHOOK_SERVICE": WEBHOOK_SERVICE,
            "BORCELLE_WEBHOOK_CONFIGURATION": WEBHOOK_CONFIGURATION,
        })
        # The Secret is in the operator's namespace, which it learns from POD_NAMESPACE.
        self.assertEqual(env["POD_NAMESPACE"], {"fieldRef": {"fieldPath": "metadata.namespace"}})
        self.assertEqual(r.of_kind("Issuer") + r.of_kind("Certificate") + r.of_kind("Secret"), [])
        self.assertNotIn("volumes", operator_pod(r))
        self.assertNotIn("volumeMounts", container(r, OPERATOR))

    def test_its_own_certificate_lets_the_operator_read_only_its_secret_and_write_only_its_configuration(self):
        r = rendered("defaults")
        self.assertEqual(r.one("Role", f"{OPERATOR}-webhook")["rules"], [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [WEBHOOK_SECRET], "verbs": ["get"]},
        ])
        self.assertEqual(r.one("ClusterRole", f"{OPERATOR}-webhook")["rules"], [{
            "apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [WEBHOOK_CONFIGURATION], "verbs": ["get", "update"],
        }])
        for kind in ("RoleBinding", "ClusterRoleBinding"):
            binding = r.one(kind, f"{OPERATOR}-webhook")
            self.assertEqual(binding["roleRef"]["name"], f"{OPERATOR}-webhook")
            self.assertEqual([s["name"] for s in binding["subjects"]], [OPERATOR_ACCOUNT])
        granted = set().union(*rules.rendered_roles(r.documents()).values())
        self.assertEqual({a for a in granted if a[1] == "secrets"},
                         {("", "secrets", "create", ""), ("", "secrets", "get", WEBHOOK_SECRET)})

    def test_cert_manager_issues_the_certificate_mounted_into_the_operator(self):
        r = rendered("webhook with cert-manager")
        name = WEBHOOK_SERVICE
        self.assertEqual(r.one("Issuer", name)["spec"], {"selfSigned": {}})
        certificate = r.one("Certificate", name)["spec"]
        ns = RELEASE_NAMESPACE
        self.assertEqual(certificate["dnsNames"], [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"])
        self.assertEqual(certificate["issuerRef"], {"group": "cert-manager.io", "kind": "Issuer", "name": name})
        pod, c = operator_pod(r), container(r, OPERATOR)
        self.assertEqual(pod["volumes"], [{"name": "webhook-tls", "secret": {"secretName": certificate["secretName"]}}])
        self.assertNotEqual(certificate["secretName"], WEBHOOK_SECRET)
        self.assertEqual(c["volumeMounts"], [{"name": "webhook-tls", "mountPath": "/etc/borcelle/webhook-tls", "readOnly": True}])
        env = env_of(c)
        self.assertEqual(env["BORCELLE_WEBHOOK_CERT_DIR"], "/etc/borcelle/webhook-tls")
        self.assertEqual(env["BORCELLE_WEBHOOK"], "true")
        self.assertNotIn("BORCELLE_WEBHOOK_SECRET", env)
        self.assertEqual(webhook_configuration(r)["metadata"]["annotations"],
                         {"cert-manager.io/inject-ca-from": f"{RELEASE_NAMESPACE}/{name}"})
        # The operator then touches no Secret and no webhook configuration.
        roles = rules.rendered_roles(r.documents())
        self.assertNotIn(("Role", "", f"{OPERATOR}-webhook"), roles)
        self.assertNotIn(("ClusterRole", "", f"{OPERATOR}-webhook"), roles)
        self.assertFalse([a for atoms in roles.values() for a in atoms
                          if a[1] in ("secrets", "validatingwebhookconfigurations")])
        self.assertIn("Its certificate comes from cert-manager", " ".join(r.files["NOTES.txt"].split()))

    def test_cert_manager_auto_follows_the_cluster_while_true_and_false_decide_alone(self):
        for scenario, cert_manager in (("defaults", False), ("webhook with cert-manager", True),
                                       ("webhook with cert-manager asked for", True),
                                       ("webhook without cert-manager although served", False),
                                       ("values-production.yaml", True),
                                       ("values-production.yaml without the Prometheus Operator", False)):
            with self.subTest(scenario):
                r = rendered(scenario)
                env = env_of(container(r, OPERATOR))
                self.assertEqual(len(r.of_kind("Certificate")), int(cert_manager))
                self.assertEqual("BORCELLE_WEBHOOK_CERT_DIR" in env, cert_manager)
                self.assertEqual("BORCELLE_WEBHOOK_SECRET" in env, not cert_manager)
                roles = rules.rendered_roles(r.documents())
                self.assertEqual(("Role", "", f"{OPERATOR}-webhook") in roles, not cert_manager)
                self.assertEqual(("ClusterRole", "", f"{OPERATOR}-webhook") in roles, not cert_manager)

    def test_an_upgrade_keeps_the_ca_bundle_the_cluster_holds(self):
        existing = {"apiVersion": VWC[0], "kind": VWC[1], "metadata": {"name": WEBHOOK_CONFIGURATION}, "webhooks": [
            {"name": WEBHOOKS[0], "clientConfig": {"service": {"name": WEBHOOK_SERVICE}, "caBundle": "Q0EtMQ=="}},
            {"name": WEBHOOKS[1], "clientConfig": {"service": {"name": WEBHOOK_SERVICE}}},
            {"name": "gone.crm.borcelle.io", "clientConfig": {"caBundle": "eA=="}},
        ]}
        r = render({}, lookups={VWC: existing})
        self.assertEqual([w["clientConfig"].get("caBundle") for w in webhooks(r).values()], ["Q0EtMQ==", None])
        self.assertEqual([str(m) for m in r.problems], [])
        existing["webhooks"][1]["clientConfig"]["caBundle"] = "Q0EtMQ=="
        r = render({}, [CERT_MANAGER_API], lookups={VWC: existing})
        self.assertEqual([w["clientConfig"].get("caBundle") for w in webhooks(r).values()], ["Q0EtMQ==", "Q0EtMQ=="])
        self.assertEqual(sorted(webhooks(r)), sorted(WEBHOOKS))

    def test_without_the_webhook_nothing_of_it_is_rendered(self):
        for r in (rendered("no webhook"), render({"operator": {"webhook": {"enabled": False}}}, [CERT_MANAGER_API])):
            kinds = {d["kind"] for d in r.documents()}
            self.assertFalse(kinds & {"ValidatingWebhookConfiguration", "Issuer", "Certificate"}, kinds)
            names = {d["metadata"]["name"] for d in r.documents()}
            self.assertFalse({WEBHOOK_SERVICE, f"{OPERATOR}-webhook"} & names)
            c = container(r, OPERATOR)
            self.assertEqual([k for k in env_of(c) if k.startswith("BORCELLE_WEBHOOK")], [])
            self.assertEqual([p["name"] for p in c["ports"]], ["http"])
            self.assertNotIn("volumes", operator_pod(r))
            self.assertNotIn("admission webhook", r.files["NOTES.txt"])
            self.assertEqual(r.files["operator-webhook.yaml"].strip(), "")
            self.assertEqual(r.files["operator-webhook-certificate.yaml"].strip(), "")
        policy = rendered("no webhook").one("NetworkPolicy", OPERATOR)
        self.assertEqual([p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]], ["http"])

    def test_without_the_operator_there_is_no_webhook(self):
        r = rendered("no operator")
        self.assertEqual(r.of_kind("ValidatingWebhookConfiguration"), [])
        self.assertNotIn(WEBHOOK_SERVICE, [d["metadata"]["name"] for d in r.of_kind("Service")])

    def test_the_network_policy_opens_the_webhook_port_to_every_source(self):
        r = rendered("values-production.yaml")
        ingress = r.one("NetworkPolicy", OPERATOR)["spec"]["ingress"]
        self.assertIn({"ports": [{"port": "webhook", "protocol": "TCP"}]}, ingress)
        metrics = next(rule for rule in ingress if rule["ports"][0]["port"] == "http")
        self.assertEqual(metrics["from"], r.values["networkPolicy"]["metricsFrom"])
        notes = " ".join(r.files["NOTES.txt"].split())
        self.assertIn("The operator's NetworkPolicy lets every source reach the webhook port (8443)", notes)
        self.assertNotIn("NetworkPolicy", rendered("defaults").files["NOTES.txt"])

    def test_the_notes_tell_where_the_webhook_applies_and_where_its_certificate_is(self):
        notes = " ".join(rendered("defaults").files["NOTES.txt"].split())
        self.assertIn(f"ValidatingWebhookConfiguration {WEBHOOK_CONFIGURATION}, failurePolicy Fail", notes)
        self.assertIn("in every namespace but kube-system, kube-public, kube-node-lease", notes)
        self.assertIn(f"the Secret {WEBHOOK_SECRET} (made by the operator, so `helm uninstall` leaves it behind)", notes)


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


class Dkim(unittest.TestCase):
    # Workers and in-process scheduling: the pods that send mail are the API and the worker.
    MOUNTED = {
        "operator": {"enabled": False},
        "storage": {"backend": "s3", "s3": {"bucket": "b"}},
        "worker": {"enabled": True},
        "mail": {"transport": "smtp", "dkim": {"existingSecret": "borcelle-dkim", "selector": "s1",
                                               "domain": "example.com"}},
    }

    def test_the_key_secret_is_mounted_read_only_into_the_api_and_the_worker_and_named_in_their_env(self):
        r = render(self.MOUNTED)
        self.assertEqual([str(m) for m in r.problems] + r.failures, [])
        for name in (API, WORKER):
            with self.subTest(name):
                pod = r.one("Deployment", name)["spec"]["template"]["spec"]
                mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "dkim")
                self.assertIs(mount["readOnly"], True)
                volume = next(v for v in pod["volumes"] if v["name"] == "dkim")
                self.assertEqual(volume["secret"], {"secretName": "borcelle-dkim", "defaultMode": 0o440,
                                                    "items": [{"key": "dkim.pem", "path": "private-key.pem"}]})
                key_file = env_of(pod["containers"][0])["BORCELLE_DKIM_KEY_FILE"]
                self.assertEqual(key_file, f"{mount['mountPath']}/private-key.pem")
        data = config(r)
        self.assertEqual((data["BORCELLE_DKIM_SELECTOR"], data["BORCELLE_DKIM_DOMAIN"]), ("s1", "example.com"))
        self.assertNotIn("BORCELLE_DKIM_KEY_FILE", data)

    def test_without_dkim_nothing_is_mounted_or_set(self):
        r = rendered("values-production.yaml")
        self.assertFalse([k for k in config(r) if k.startswith("BORCELLE_DKIM")])
        for d in r.of_kind("Deployment"):
            pod = d["spec"]["template"]["spec"]
            self.assertNotIn("dkim", [v["name"] for v in pod.get("volumes") or []], d["metadata"]["name"])
            self.assertFalse([k for k in env_of(pod["containers"][0]) if k.startswith("BORCELLE_DKIM")])

    def test_with_the_operator_the_selector_alone_goes_to_the_configmap_its_jobs_read_too(self):
        r = render({"mail": {"dkim": {"selector": "s1"}}})
        self.assertEqual([str(m) for m in r.problems] + r.failures, [])
        self.assertEqual(config(r)["BORCELLE_DKIM_SELECTOR"], "s1")
        self.assertNotIn("BORCELLE_DKIM_DOMAIN", config(r))
        pod = r.one("Deployment", API)["spec"]["template"]["spec"]
        self.assertNotIn("dkim", [v["name"] for v in pod["volumes"]])


def inbound_pod(r: helm.Rendered) -> dict:
    return r.one("Deployment", INBOUND)["spec"]["template"]["spec"]


class Inbound(unittest.TestCase):
    """The SMTP receiver of replies and bounces (`borcelle inbound`, inbound.enabled)."""

    S3 = {"storage": {"backend": "s3", "s3": {"bucket": "borcelle"}}}
    ON = {**S3, "inbound": {"enabled": True, "domain": "replies.example.com"}}

    def test_off_by_default_nothing_of_it_is_rendered(self):
        for scenario in ("defaults", "no operator"):
            with self.subTest(scenario):
                r = rendered(scenario)
                self.assertFalse([d for d in r.documents() if d["metadata"]["name"] == INBOUND])
                self.assertNotIn("BORCELLE_INBOUND_DOMAIN", config(r))
                self.assertFalse([k for k in env_of(container(r, API)) if k.startswith("BORCELLE_INBOUND")])
                for name in ("inbound-deployment.yaml", "inbound-service.yaml", "inbound-serviceaccount.yaml"):
                    self.assertEqual(r.files[name].strip(), "", name)
                self.assertNotIn("Inbound mail", r.files["NOTES.txt"])

    def test_the_deployment_runs_borcelle_inbound_hardened_with_its_health_port_probed(self):
        r = rendered("inbound")
        deployment = r.one("Deployment", INBOUND)
        self.assertEqual(deployment["spec"]["replicas"], 2)
        pod = inbound_pod(r)
        c = pod["containers"][0]
        self.assertEqual((c["command"], c["args"]), (["/usr/local/bin/borcelle"], ["inbound"]))
        self.assertEqual(c["image"], container(r, API)["image"])
        self.assertEqual(c["ports"], [{"name": "smtp", "containerPort": 2525, "protocol": "TCP"},
                                      {"name": "health", "containerPort": 8083, "protocol": "TCP"}])
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "health"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "health"})
        self.assertEqual(env_of(c), {
            "BORCELLE_INBOUND_LISTEN": "0.0.0.0:2525",
            "BORCELLE_INBOUND_HEALTH_LISTEN": "0.0.0.0:8083",
            "BORCELLE_INBOUND_MAX_MESSAGE_BYTES": "26214400",
            "BORCELLE_INBOUND_MAX_CONNECTIONS": "1000",
            "BORCELLE_INBOUND_MAX_CONNECTIONS_PER_CLIENT": "50",
            "BORCELLE_INBOUND_CONNECTIONS_PER_MINUTE": "600",
            "BORCELLE_INBOUND_COMMAND_TIMEOUT_SECS": "300",
        })
        self.assertEqual(c["envFrom"], [{"secretRef": {"name": "borcelle-env"}}, {"configMapRef": {"name": CONFIG}}])
        self.assertEqual((pod["serviceAccountName"], pod["automountServiceAccountToken"]), (INBOUND_ACCOUNT, False))
        self.assertIs(r.one("ServiceAccount", INBOUND_ACCOUNT)["automountServiceAccountToken"], False)
        self.assertEqual(c["securityContext"], r.values["securityContext"])
        self.assertEqual(pod["securityContext"], r.values["podSecurityContext"])
        self.assertEqual(c["resources"], r.values["inbound"]["resources"])
        self.assertEqual([v["name"] for v in pod["volumes"]], ["tmp"])
        self.assertEqual(c["volumeMounts"], [{"name": "tmp", "mountPath": "/tmp"}])

    def test_every_pod_that_sends_mail_gets_the_domain_and_serve_leaves_the_receiver_to_the_deployment(self):
        for scenario in ("inbound", "values-production.yaml"):
            with self.subTest(scenario):
                r = rendered(scenario)
                # The ConfigMap reaches the API, the workers and the operator's occurrence Jobs.
                self.assertEqual(config(r)["BORCELLE_INBOUND_DOMAIN"], r.values["inbound"]["domain"])
                self.assertEqual(env_of(container(r, API))["BORCELLE_INBOUND_IN_SERVE"], "false")
                for d in r.of_kind("Deployment"):
                    if d["metadata"]["name"] in (API, WORKER, INBOUND):
                        env_from = d["spec"]["template"]["spec"]["containers"][0]["envFrom"]
                        self.assertIn({"configMapRef": {"name": CONFIG}}, env_from, d["metadata"]["name"])
        self.assertEqual(env_of(container(rendered("values-production.yaml"), OPERATOR))["BORCELLE_WORKER_ENV_CONFIGMAP"], CONFIG)
        self.assertNotIn("BORCELLE_INBOUND_IN_SERVE", env_of(container(rendered("values-production.yaml"), WORKER)))

    def test_the_service_sends_port_25_to_the_receivers_smtp_port_only(self):
        r = rendered("inbound")
        service = r.one("Service", INBOUND)
        self.assertEqual(service["spec"]["type"], "ClusterIP")
        self.assertEqual(service["spec"]["ports"], [{"name": "smtp", "port": 25, "targetPort": "smtp", "protocol": "TCP"}])
        self.assertEqual(service["spec"]["selector"], r.one("Deployment", INBOUND)["spec"]["selector"]["matchLabels"])
        for key in ("externalTrafficPolicy", "loadBalancerIP"):
            self.assertNotIn(key, service["spec"])
        self.assertNotIn("annotations", service["metadata"])

    def test_a_load_balancer_keeps_the_client_addresses_and_its_ip_and_annotations(self):
        annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
        r = render({**self.ON, "inbound": {**self.ON["inbound"], "service": {
            "type": "LoadBalancer", "loadBalancerIP": "203.0.113.25", "externalTrafficPolicy": "Local",
            "annotations": annotations}}})
        self.assertEqual([str(m) for m in r.problems] + r.failures, [])
        service = r.one("Service", INBOUND)
        self.assertEqual((service["spec"]["type"], service["spec"]["externalTrafficPolicy"], service["spec"]["loadBalancerIP"]),
                         ("LoadBalancer", "Local", "203.0.113.25"))
        self.assertEqual(service["metadata"]["annotations"], annotations)
        self.assertIn(f"get svc {INBOUND} -o jsonpath='{{.status.loadBalancer.ingress[0]}}'", r.files["NOTES.txt"])
        production = rendered("values-production.yaml").one("Service", INBOUND)["spec"]
        self.assertEqual((production["type"], production["externalTrafficPolicy"]), ("LoadBalancer", "Local"))
        self.assertNotIn("loadBalancerIP", production)

    def test_ports_hostname_replicas_and_limits_follow_the_values(self):
        r = render({**self.ON, "inbound": {**self.ON["inbound"], "port": 2600, "hostname": "mx.example.com",
                                          "replicaCount": 3, "service": {"port": 2525},
                                          "limits": {"maxMessageBytes": 52428800, "maxConnections": 200,
                                                     "maxConnectionsPerClient": 5, "connectionsPerMinute": 0,
                                                     "commandTimeoutSeconds": 60}}})
        self.assertEqual([str(m) for m in r.problems] + r.failures, [])
        self.assertEqual(r.one("Deployment", INBOUND)["spec"]["replicas"], 3)
        c = container(r, INBOUND)
        self.assertEqual(c["ports"][0], {"name": "smtp", "containerPort": 2600, "protocol": "TCP"})
        env = env_of(c)
        self.assertEqual({k: v for k, v in env.items() if k != "BORCELLE_INBOUND_HEALTH_LISTEN"}, {
            "BORCELLE_INBOUND_LISTEN": "0.0.0.0:2600",
            "BORCELLE_INBOUND_HOSTNAME": "mx.example.com",
            "BORCELLE_INBOUND_MAX_MESSAGE_BYTES": "52428800",
            "BORCELLE_INBOUND_MAX_CONNECTIONS": "200",
            "BORCELLE_INBOUND_MAX_CONNECTIONS_PER_CLIENT": "5",
            "BORCELLE_INBOUND_CONNECTIONS_PER_MINUTE": "0",
            "BORCELLE_INBOUND_COMMAND_TIMEOUT_SECS": "60",
        })
        self.assertEqual(r.one("Service", INBOUND)["spec"]["ports"][0]["port"], 2525)
        self.assertEqual(rules.inbound_problems(r.documents()), [])

    def test_a_tls_secret_is_mounted_read_only_and_named_in_the_env(self):
        r = rendered("values-production.yaml")
        pod, c = inbound_pod(r), container(r, INBOUND)
        volume = next(v for v in pod["volumes"] if v["name"] == "inbound-tls")
        self.assertEqual(volume["secret"], {"secretName": "borcelle-inbound-tls", "defaultMode": 0o440, "items": [
            {"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]})
        mount = next(m for m in c["volumeMounts"] if m["name"] == "inbound-tls")
        self.assertEqual(mount, {"name": "inbound-tls", "mountPath": "/etc/borcelle/inbound-tls", "readOnly": True})
        env = env_of(c)
        self.assertEqual((env["BORCELLE_INBOUND_TLS_CERT"], env["BORCELLE_INBOUND_TLS_KEY"]),
                         ("/etc/borcelle/inbound-tls/tls.crt", "/etc/borcelle/inbound-tls/tls.key"))
        self.assertEqual(env["BORCELLE_INBOUND_HOSTNAME"], "mx.replies.example.com")
        # Only the receiver gets it; without a Secret nothing is mounted and STARTTLS is off.
        for name in (API, WORKER):
            self.assertNotIn("inbound-tls", [v["name"] for v in r.one("Deployment", name)["spec"]["template"]["spec"]["volumes"]])
        plain = rendered("inbound")
        self.assertFalse([k for k in env_of(container(plain, INBOUND)) if "TLS" in k])
        self.assertIn("No STARTTLS yet", plain.files["NOTES.txt"])
        self.assertNotIn("No STARTTLS yet", r.files["NOTES.txt"])

    def test_a_budget_keeps_one_receiver_up(self):
        r = rendered("inbound")
        budget = r.one("PodDisruptionBudget", INBOUND)["spec"]
        self.assertEqual(budget["maxUnavailable"], 1)
        self.assertEqual(budget["selector"]["matchLabels"], r.one("Deployment", INBOUND)["spec"]["selector"]["matchLabels"])
        r = render({**self.ON, "inbound": {**self.ON["inbound"], "podDisruptionBudget": {"enabled": False}}})
        self.assertNotIn(INBOUND, [d["metadata"]["name"] for d in r.of_kind("PodDisruptionBudget")])

    def test_the_network_policy_opens_smtp_to_everyone_and_health_only_to_metrics_from(self):
        r = rendered("values-production.yaml")
        policy = r.one("NetworkPolicy", INBOUND)
        self.assertEqual(policy["spec"]["podSelector"]["matchLabels"], r.one("Deployment", INBOUND)["spec"]["selector"]["matchLabels"])
        self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
        self.assertEqual(policy["spec"]["ingress"], [
            {"ports": [{"port": "smtp", "protocol": "TCP"}]},
            {"ports": [{"port": "health", "protocol": "TCP"}], "from": r.values["networkPolicy"]["metricsFrom"]},
        ])
        # The receiver is not among the pods that accept nothing.
        no_ingress = r.one("NetworkPolicy", f"{FULLNAME}-no-ingress")["spec"]["podSelector"]["matchExpressions"][1]
        self.assertNotIn("inbound", no_ingress["values"])
        self.assertNotIn(INBOUND, [d["metadata"]["name"] for d in render(self.ON).of_kind("NetworkPolicy")])

    def test_the_notes_tell_which_dns_records_to_publish(self):
        notes = " ".join(rendered("values-production.yaml").files["NOTES.txt"].split())
        self.assertIn("mx.replies.example.com. A/AAAA <that address>", notes)
        self.assertIn("replies.example.com. MX 10 mx.replies.example.com.", notes)
        self.assertIn("an SPF record for replies.example.com", notes)
        notes = " ".join(rendered("inbound").files["NOTES.txt"].split())
        self.assertIn(f"The Service {INBOUND} is ClusterIP: forward port 25", notes)
        self.assertIn("replies.example.com. MX 10 replies.example.com.", notes)
        # The outbox sends nothing, so no envelope sender to authorise.
        self.assertNotIn("SPF", notes)

    def test_with_a_shared_claim_the_receiver_mounts_it(self):
        r = render({"storage": {"local": {"existingClaim": "attachments"}},
                    "inbound": {"enabled": True, "domain": "replies.example.com"}})
        self.assertEqual([str(m) for m in r.problems] + r.failures, [])
        pod = inbound_pod(r)
        volume = next(v for v in pod["volumes"] if v["name"] == "attachments")
        self.assertEqual(volume, {"name": "attachments", "persistentVolumeClaim": {"claimName": "attachments"}})
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "attachments")
        self.assertEqual(mount["mountPath"], config(r)["BORCELLE_STORAGE_DIR"])


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
        self.assertEqual(len(r.of_kind("NetworkPolicy")), 4)
        budgets = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in r.of_kind("PodDisruptionBudget")}
        self.assertEqual(budgets, {"api", "worker", "operator", "inbound"})
        for d in r.of_kind("Deployment"):
            resources = d["spec"]["template"]["spec"]["containers"][0]["resources"]
            self.assertTrue(resources["requests"] and resources["limits"]["memory"], d["metadata"]["name"])

    def test_production_values_with_the_prometheus_operator_render_both_service_monitors(self):
        r = rendered("values-production.yaml")
        monitors = {d["metadata"]["name"]: d for d in r.of_kind("ServiceMonitor")}
        self.assertEqual(sorted(monitors), [API, OPERATOR])
        self.assertEqual({m["apiVersion"] for m in monitors.values()}, {"monitoring.coreos.com/v1"})
        self.assertEqual({m["metadata"]["labels"]["release"] for m in monitors.values()}, {"prometheus"})
        self.assertIn("scrapes them through ServiceMonitors", r.files["NOTES.txt"])
        self.assertNotIn("No ServiceMonitor was created", r.files["NOTES.txt"])

    def test_production_values_without_the_prometheus_operator_render_no_service_monitor(self):
        r = rendered("values-production.yaml without the Prometheus Operator")
        self.assertTrue(r.values["metrics"]["serviceMonitor"]["enabled"])
        self.assertEqual(r.of_kind("ServiceMonitor"), [])
        self.assertEqual(r.files["servicemonitor.yaml"].strip(), "")
        self.assertEqual([str(m) for m in r.problems], [])
        notes = " ".join(r.files["NOTES.txt"].split())
        self.assertIn("No ServiceMonitor was created although metrics.serviceMonitor.enabled is true", notes)
        self.assertIn("(the Prometheus Operator is not installed), so they are skipped", notes)
        # Everything else of the production setup is still there.
        self.assertEqual(len(r.of_kind("NetworkPolicy")), 4)
        self.assertEqual(len(r.of_kind("Deployment")), 4)

    def test_service_monitors_stay_off_unless_asked_even_with_the_prometheus_operator(self):
        r = render({}, [SERVICE_MONITOR_API])
        self.assertEqual(r.of_kind("ServiceMonitor"), [])
        self.assertNotIn("ServiceMonitor", r.files["NOTES.txt"])

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
    ("a bare name in imagePullSecrets", {"imagePullSecrets": ["regcred"]}),
    ("an unknown webhook failurePolicy", {"operator": {"webhook": {"failurePolicy": "Retry"}}}),
    ("a webhook timeout of 0", {"operator": {"webhook": {"timeoutSeconds": 0}}}),
    ("a webhook timeout over 30 seconds", {"operator": {"webhook": {"timeoutSeconds": 31}}}),
    ("a string for operator.webhook.enabled", {"operator": {"webhook": {"enabled": "yes"}}}),
    ("an unknown certManager.enabled", {"operator": {"webhook": {"certManager": {"enabled": "maybe"}}}}),
    ("a namespace name that is no DNS label", {"operator": {"webhook": {"excludeNamespaces": ["Kube_System"]}}}),
    ("a misspelt webhook key", {"operator": {"webhook": {"failurePolcy": "Ignore"}}}),
    ("a DKIM key Secret without a selector",
     {"operator": {"enabled": False}, "mail": {"dkim": {"existingSecret": "borcelle-dkim"}}}),
    ("a DKIM key Secret the operator's Jobs cannot mount",
     {"mail": {"dkim": {"existingSecret": "borcelle-dkim", "selector": "s1"}}}),
    ("a DKIM selector that is no DNS name", {"mail": {"dkim": {"selector": "bad_selector"}}}),
    ("a misspelt DKIM key", {"mail": {"dkim": {"secret": "borcelle-dkim"}}}),
    ("inbound enabled without a domain", {**Inbound.S3, "inbound": {"enabled": True}}),
    ("inbound enabled with attachments on the API's emptyDir",
     {"inbound": {"enabled": True, "domain": "replies.example.com"}}),
    ("an inbound domain that is no domain name", {"inbound": {"domain": "replies_example.com"}}),
    ("an inbound domain that is an address", {"inbound": {"domain": "reply@example.com"}}),
    ("an inbound hostname with a space", {"inbound": {"hostname": "mx example.com"}}),
    ("an inbound Service port of 0", {"inbound": {"service": {"port": 0}}}),
    ("an inbound Service port out of range", {"inbound": {"service": {"port": 70000}}}),
    ("a string for the inbound Service port", {"inbound": {"service": {"port": "25"}}}),
    ("an inbound container port below 1024 (no capability to bind it)", {"inbound": {"port": 25}}),
    ("the inbound container port on its health port", {"inbound": {"port": 8083}}),
    ("an unknown inbound Service type", {"inbound": {"service": {"type": "ExternalName"}}}),
    ("an unknown externalTrafficPolicy", {"inbound": {"service": {"type": "LoadBalancer", "externalTrafficPolicy": "Nearest"}}}),
    ("externalTrafficPolicy Local on a ClusterIP Service", {"inbound": {"service": {"externalTrafficPolicy": "Local"}}}),
    ("a loadBalancerIP on a ClusterIP Service", {"inbound": {"service": {"loadBalancerIP": "203.0.113.25"}}}),
    ("a loadBalancerIP that is no address", {"inbound": {"service": {"type": "LoadBalancer", "loadBalancerIP": "mx.example.com"}}}),
    ("a string for inbound.enabled", {"inbound": {"enabled": "yes"}}),
    ("a negative inbound.replicaCount", {"inbound": {"replicaCount": -1}}),
    ("a message size limit under 1024 bytes", {"inbound": {"limits": {"maxMessageBytes": 100}}}),
    ("no connection allowed at all", {"inbound": {"limits": {"maxConnections": 0}}}),
    ("a negative connectionsPerMinute", {"inbound": {"limits": {"connectionsPerMinute": -1}}}),
    ("a command timeout of 0", {"inbound": {"limits": {"commandTimeoutSeconds": 0}}}),
    ("an inbound TLS Secret name with capitals", {"inbound": {"tls": {"existingSecret": "Inbound-TLS"}}}),
    ("a misspelt inbound key", {"inbound": {"domian": "replies.example.com"}}),
    ("a misspelt inbound limit", {"inbound": {"limits": {"maxMessageSize": 1024}}}),
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
