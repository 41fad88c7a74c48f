"""deploy/ is checked here because no container engine runs in CI: each artefact is parsed and
checked for what an operator relies on (services, ports, probes, secrets, non-root, hardening)."""

from __future__ import annotations

import json
import re
from configparser import ConfigParser
from pathlib import Path

import yaml

from rems_ingest.adapters.amqp.topology import Topology
from rems_ingest.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MLLP, HTTP = Settings().mllp.port, Settings().http.port
SECRET_LOOKING = re.compile(r"(amqp|postgres(ql)?)://[^@/\s]+:[^@/\s]+@", re.I)


def test_dockerfile_is_slim_non_root_and_probes_readyz() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert stages and all(s.endswith("-slim") or s.startswith("python:3.11-slim") for s in stages)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert {str(MLLP), str(HTTP)} <= set(re.findall(r"^EXPOSE\s+(.+)$", text, re.M)[0].split())
    assert "/readyz" in re.search(r"^HEALTHCHECK.*(?:\n\s+.*)*", text, re.M).group(0)  # type: ignore[union-attr]
    assert re.search(r'^CMD \["serve"\]', text, re.M) and 'ENTRYPOINT ["rems-ingest"]' in text
    assert "REMS_RULES_DIR=" in text and "REMS_CONFIG=" in text  # a wheel install finds its profile and config
    assert not SECRET_LOOKING.search(text)


def test_compose_runs_the_daemon_with_postgres_and_rabbitmq_and_secrets_from_files() -> None:
    c = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = c["services"]
    assert {"rems-ingest", "postgres", "rabbitmq"} <= set(services)
    app = services["rems-ingest"]
    assert {f"{MLLP}:{MLLP}", f"{HTTP}:{HTTP}"} <= set(app["ports"])
    assert {"postgres", "rabbitmq"} == set(app["depends_on"]) and all(v["condition"] == "service_healthy" for v in app["depends_on"].values())
    assert any("/readyz" in part for part in app["healthcheck"]["test"])
    env = app["environment"]
    assert env["REMS_STORE__URL_FILE"].startswith("/run/secrets/") and env["REMS_AMQP__URL_FILE"].startswith("/run/secrets/")
    assert {"db-url", "amqp-url"} <= set(app["secrets"]) <= set(c["secrets"])
    assert all("file" in s for s in c["secrets"].values())
    assert "POSTGRES_PASSWORD" not in services["postgres"]["environment"]  # *_FILE only
    assert all("healthcheck" in s for s in services.values())
    mounted = " ".join(services["rabbitmq"]["volumes"])
    assert "rabbitmq/definitions.json" in mounted and (DEPLOY / "rabbitmq" / "definitions.json").is_file()
    assert not SECRET_LOOKING.search(json.dumps(c))  # no credential in any value (the comments show placeholders)


def _k8s() -> dict[str, dict]:  # type: ignore[type-arg]
    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_kubernetes_deployment_has_probes_ports_secret_references_and_runs_non_root() -> None:
    k = _k8s()
    assert {"Deployment", "Service", "ConfigMap"} <= set(k)
    assert "Secret" not in k  # referenced, never committed
    pod = k["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {"mllp": MLLP, "http": HTTP} == ports
    assert "/readyz" == container["readinessProbe"]["httpGet"]["path"] and "/healthz" == container["livenessProbe"]["httpGet"]["path"]
    assert "startupProbe" in container
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volumes and secret_volumes[0]["secret"]["secretName"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    for var in ("REMS_STORE__URL_FILE", "REMS_AMQP__URL_FILE"):
        assert env[var].startswith(mounts[secret_volumes[0]["name"]] + "/")
    assert pod["terminationGracePeriodSeconds"] > 20  # longer than shutdown_grace_seconds in the ConfigMap
    assert k["Deployment"]["spec"]["selector"]["matchLabels"].items() <= k["Service"]["spec"]["selector"].items()
    assert {p["targetPort"] for p in k["Service"]["spec"]["ports"]} == {"mllp", "http"}


def test_kubernetes_configmap_is_a_valid_daemon_config(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rems_ingest.config import load_settings

    cfg = tmp_path / "rems-ingest.toml"
    cfg.write_text(_k8s()["ConfigMap"]["data"]["rems-ingest.toml"])
    s = load_settings(cfg)
    assert (s.mllp.host, s.mllp.port, s.http.port, s.log.format) == ("0.0.0.0", MLLP, HTTP, "json")
    assert s.shutdown_grace_seconds < _k8s()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_systemd_unit_is_hardened_reloads_on_hup_and_takes_secrets_as_credentials() -> None:
    unit = ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "rems-ingest.service").read_text())
    svc = unit["Service"]
    assert svc["ExecStart"].endswith("rems-ingest serve")
    assert "-HUP" in svc["ExecReload"] and "SIGTERM" == svc["KillSignal"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "DynamicUser": "yes", "CapabilityBoundingSet": ""}.items():
        assert value == svc[key], key
    assert "LoadCredential" in svc and "REMS_AMQP__URL_FILE=%d/" in (DEPLOY / "systemd" / "rems-ingest.service").read_text()
    assert "multi-user.target" == unit["Install"]["WantedBy"]


def test_rabbitmq_definitions_match_what_the_relay_declares() -> None:
    """Queue arguments must be identical, or the relay's declare fails PRECONDITION_FAILED."""
    d = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    t = Topology()
    exchanges = {e["name"]: e["type"] for e in d["exchanges"]}
    assert {t.exchange: "topic", t.dlx: "fanout"} == exchanges
    queues = {q["name"]: q["arguments"] for q in d["queues"]}
    assert set(queues) == {*t.queues, t.dead_letter_queue}
    for name in t.queues:
        assert {"x-queue-type": t.queue_type, "x-dead-letter-exchange": t.dlx, "x-overflow": "reject-publish"} == queues[name]
        assert "drop-head" not in json.dumps(queues[name])
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in d["bindings"]}
    assert {(t.exchange, q, k) for q, keys in t.queues.items() for k in keys} | {(t.dlx, t.dead_letter_queue, "")} == bindings


def test_rabbitmq_users_are_least_privilege_and_carry_no_password() -> None:
    d = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    assert all(u["password_hash"] == "" and u["tags"] == [] for u in d["users"])  # no admin, no committed secret
    perms = {p["user"]: p for p in d["permissions"]}
    assert {p["vhost"] for p in perms.values()} == {v["name"] for v in d["vhosts"]} and "/" not in perms["rems-ingest"]["vhost"]
    for consumer in ("rems-paging", "rems-pharmacy"):
        assert ("^$", "^$") == (perms[consumer]["configure"], perms[consumer]["write"])
        assert re.fullmatch(perms[consumer]["read"], consumer.replace("rems-", "rems."))
        assert not re.fullmatch(perms[consumer]["read"], "rems.alerts")
    assert not re.fullmatch(perms["rems-ingest"]["write"], "amq.default") and re.fullmatch(perms["rems-ingest"]["write"] + ".*", "rems.alerts")


def test_prometheus_alert_rules_use_only_metrics_the_daemon_exports() -> None:
    from prometheus_client import generate_latest

    from rems_ingest.observability import metrics

    exported = {line.split()[2] for line in generate_latest(metrics.REGISTRY).decode().splitlines() if line.startswith("# TYPE")}
    exported |= {f"{m}_bucket" for m in exported} | {f"{m}_total" for m in exported}
    rules = [r for g in yaml.safe_load((DEPLOY / "prometheus" / "rems-ingest-alerts.yaml").read_text())["groups"] for r in g["rules"]]
    assert {"RemsAlertsNotReachingBroker", "RemsBrokerDisconnected", "RemsLabFeedQuiet"} <= {r["alert"] for r in rules}
    for r in rules:
        used = set(re.findall(r"\b(rems_[a-z_]+)", r["expr"]))
        assert used and used <= exported, (r["alert"], used - exported)
        assert r["labels"]["severity"] in ("page", "ticket") and r["annotations"]["summary"]
