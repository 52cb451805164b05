"""`cocina build --target cloud`, checked by the real tools: kubernetes-validate --strict (core kinds), KEDA's own
CRD schema (the ScaledObject), kubectl kustomize, hadolint (both Dockerfiles); and the manifests agree with each
other (selectors, ports, probes, secrets) and with what cocina's endpoints mean."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cocina.deploy.build import Target, build
from cocina.deploy.cloud import CloudOptions
from cocina.deploy.source import BuildSource
from tests.deploy.conftest import KEDA_CRD, tool

CORE = ["serviceaccount", "configmap", "secret", "deployment", "service", "pdb", "hpa"]


@pytest.fixture(scope="module")
def cloud(echo_source: BuildSource, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cloud") / "out"
    build(Target.CLOUD, echo_source, out, cloud=CloudOptions(namespace="models"))
    return out


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_core_kinds_pass_kubernetes_validate_strict(cloud: Path) -> None:
    files = [str(cloud / "k8s" / f"{k}.yaml") for k in CORE]
    done = subprocess.run(
        [tool("kubernetes-validate"), "-k", "1.30", "--strict", *files], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(CORE), done.stdout
    # The checker does check: an unknown field in a Deployment fails strict validation.
    bad = _load(cloud / "k8s" / "deployment.yaml")
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    (cloud.parent / "bad.yaml").write_text(yaml.safe_dump(bad))
    refused = subprocess.run(
        [tool("kubernetes-validate"), "-k", "1.30", "--strict", str(cloud.parent / "bad.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "readinesProbe" in refused.stdout + refused.stderr


def _keda_schema() -> dict[str, Any]:
    assert KEDA_CRD.is_file(), f"KEDA's CRD schema is read from {KEDA_CRD} (shared/conformance/keda)"
    crd = yaml.safe_load(KEDA_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return version["schema"]["openAPIV3Schema"]


def test_the_scaled_object_passes_kedas_crd_schema(cloud: Path) -> None:
    scaled = _load(cloud / "k8s" / "scaledobject.yaml")
    schema = _keda_schema()
    jsonschema.validate(scaled, schema)
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (4, 16)  # the seed's 4 -> 16
    trigger = spec["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["query"] == 'sum(cocina_queue_depth{job="echo"})'
    assert trigger["metadata"]["threshold"] == "4"  # the echo predictor's concurrency: the backlog one replica takes
    assert spec["scaleTargetRef"]["name"] == _load(cloud / "k8s" / "deployment.yaml")["metadata"]["name"]
    # The schema does reject: a threshold must be given as KEDA types it, and unknown spec keys are refused.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scaled, "spec": {**spec, "minReplicaCount": "four"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scaled, "spec": {k: v for k, v in spec.items() if k != "scaleTargetRef"}}, schema)


def test_kustomize_renders_the_default_set(cloud: Path) -> None:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(cloud / "k8s")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout))
    assert kinds == sorted(
        ["ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "ScaledObject"]
    )  # the HPA is the alternative to KEDA, not applied with it
    assert all(d["metadata"]["namespace"] == "models" for d in yaml.safe_load_all(done.stdout))


def test_hadolint_passes_both_dockerfiles(cloud: Path) -> None:
    for name in ("Dockerfile", "Dockerfile.cuda"):
        done = subprocess.run([tool("hadolint"), str(cloud / name)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        text = (cloud / name).read_text()
        # every kernel variant compiled at image build time (the nodes' CPUs need not be the build host's)
        assert "cocina kernels build --strict --variant avx512bf16 --variant avx512vnni --variant avx512 " in text
        assert "USER 10001" in text
    bad = cloud.parent / "Dockerfile.bad"
    bad.write_text("FROM python\nRUN cd /tmp && pip install x\n")
    assert subprocess.run([tool("hadolint"), str(bad)], capture_output=True, check=False).returncode != 0


def test_images_compile_every_kernel_variant() -> None:
    from cocina.deploy.cloud import KERNEL_VARIANTS
    from cocina.engine.cpu_kernels import VARIANTS

    assert list(KERNEL_VARIANTS) == list(VARIANTS)


def test_probes_grace_and_objects_agree(cloud: Path) -> None:
    deployment = _load(cloud / "k8s" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    assert _load(cloud / "k8s" / "service.yaml")["spec"]["selector"] == labels
    assert _load(cloud / "k8s" / "pdb.yaml")["spec"]["selector"]["matchLabels"] == labels
    # Startup: long enough to load a model; readiness: the model is loaded; liveness: the loop answers.
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health-check"
    args = container["args"]
    drain = float(args[args.index("--drain-grace") + 1])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > drain + pre_stop
    assert args[args.index("--store") + 1] == "$(COCINA_STORE)"
    secret = _load(cloud / "k8s" / "secret.yaml")
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    assert refs == set(secret["stringData"])
    config = _load(cloud / "k8s" / "configmap.yaml")
    assert config["data"]["OMP_NUM_THREADS"] == "2"  # threads per replica, explicit
    assert container["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    assert container["ports"][0]["containerPort"] == 5000


def test_a_language_model_ships_its_weights_and_batch_capacity(llm_source: BuildSource, tmp_path: Path) -> None:
    out = tmp_path / "cloud"
    build(Target.CLOUD, llm_source, out)
    assert (out / "app" / "model" / "config.json").is_file()
    assert "ENV COCINA_MODEL=/app/model" in (out / "Dockerfile").read_text()
    args = _load(out / "k8s" / "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-num-seqs") + 1] == "8"
    threshold = _load(out / "k8s" / "scaledobject.yaml")["spec"]["triggers"][0]["metadata"]["threshold"]
    assert threshold == "8"  # one replica's batch: the engine decodes 8 sequences together
