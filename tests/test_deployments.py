"""The deployment files, rendered the way the workers render them: every deployment's job
variables of prefect.docker.yaml through prefect-docker's job configuration down to docker-py's
create call, and of prefect.k8s.yaml through prefect-kubernetes's job configuration down to the
Job manifest. A key the worker does not read (``device_requests`` directly under job_variables,
say) fails here, because Prefect itself drops such keys without a word."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GPU = {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}


def _prefect_file(name: str) -> dict[str, Any]:
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load((ROOT / name).read_text())
    # prefect deploy skips a whole file that does not validate, with a yellow line: nothing deployed.
    PrefectYamlModel.model_validate(raw)
    return raw


def _deployments(name: str) -> list[dict[str, Any]]:
    deployments = _prefect_file(name)["deployments"]
    assert {d["name"] for d in deployments} >= {"default", "nightly-gallery"}
    return deployments


def _resolved(job_variables: dict[str, Any], step_outputs: dict[str, Any]) -> dict[str, Any]:
    """Job variables with step outputs and ``$ENV`` references filled in as ``prefect deploy`` does."""
    from prefect.utilities.templating import apply_values

    return apply_values(copy.deepcopy(job_variables), step_outputs, remove_notset=False)


def _unknown_keys(job_variables: dict[str, Any], template: dict[str, Any]) -> set[str]:
    return set(job_variables) - set(template["variables"]["properties"])


def _check_entrypoint(deployment: dict[str, Any]) -> None:
    module, _, name = deployment["entrypoint"].partition(":")
    assert module == "nst_batch.flows.stylize_batch" and name == "stylize_batch", deployment["entrypoint"]


# --- Docker ---------------------------------------------------------------------------------


def _docker_container_args(job_variables: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments docker-py's create_container would get from a Docker worker."""
    from unittest import mock

    from docker.models.containers import _create_container_args
    from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

    template = DockerWorker.get_default_base_job_template()
    unknown = _unknown_keys(job_variables, template)
    assert not unknown, f"job variables prefect-docker does not read (they would be dropped): {sorted(unknown)}"
    config = asyncio.run(DockerWorkerJobConfiguration.from_template_and_values(template, job_variables))
    client = mock.MagicMock()
    client.version.return_value = {"Version": "27.0.0"}
    settings = DockerWorker._build_container_settings(mock.MagicMock(), client, config)
    settings["version"] = "1.45"  # docker-py needs the daemon's API version to build a host config
    args = _create_container_args(settings)
    return {**args, "pull_policy": config._determine_image_pull_policy().value}


@pytest.mark.parametrize("deployment", _deployments("prefect.docker.yaml"), ids=lambda d: d["name"])
def test_every_docker_deployment_creates_a_gpu_container_from_the_built_image(deployment):
    _check_entrypoint(deployment)
    outputs = {
        "build-image": {"image": "nst-batch:3f2a9c1d0b7e", "image_name": "nst-batch", "tag": "3f2a9c1d0b7e"},
        "image-tag": {"stdout": "3f2a9c1d0b7e"},
    }
    args = _docker_container_args(_resolved(deployment["work_pool"]["job_variables"], outputs))
    assert args["image"] == "nst-batch:3f2a9c1d0b7e"
    requests = args["host_config"]["DeviceRequests"]
    assert requests == [{"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]
    assert args["environment"]["NST_TASK_RUNNER"] == "threads"
    assert args["host_config"]["Binds"] == ["/etc/nst/aws:/home/nst/.aws:ro"]
    # IfNotPresent finds the image built on the worker's host; `latest` would be pulled every run.
    assert args["pull_policy"] == "IfNotPresent"
    assert not any(k.startswith("AWS_SECRET") or k == "AWS_ACCESS_KEY_ID" for k in args["environment"])


def test_docker_image_tag_is_the_commit_not_latest():
    build = _prefect_file("prefect.docker.yaml")["build"]
    steps = {next(iter(step)): next(iter(step.values())) for step in build}
    image = steps["prefect_docker.deployments.steps.build_docker_image"]
    assert image["tag"] == "{{ image-tag.stdout }}" and image["dockerfile"] == "Dockerfile"
    assert "git rev-parse" in steps["prefect.deployments.steps.run_shell_script"]["script"]


def test_device_requests_directly_under_job_variables_fails_the_check():
    """What main shipped: prefect-docker has no such job variable, so the GPU request was dropped."""
    deployment = _deployments("prefect.docker.yaml")[0]
    variables = _resolved(deployment["work_pool"]["job_variables"], {"build-image": {"image": "nst-batch:x"}})
    variables["device_requests"] = variables.pop("container_create_kwargs")["device_requests"]
    with pytest.raises(AssertionError, match="device_requests"):
        _docker_container_args(variables)


# --- Kubernetes -----------------------------------------------------------------------------


def _k8s_template() -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / "k8s-gpu-job-template.json").read_text())


def _k8s_job(job_variables: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest a Kubernetes worker would submit for a flow run of this deployment."""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = _k8s_template()
    unknown = _unknown_keys(job_variables, template)
    assert not unknown, f"job variables the pool's template does not read (they would be dropped): {sorted(unknown)}"
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, job_variables))
    config.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="nightly-run"))
    return config.job_manifest


def test_k8s_template_is_prefect_kubernetes_default_plus_gpu_secret_and_node_selector():
    from prefect_kubernetes.worker import KubernetesWorker

    ours, theirs = _k8s_template(), KubernetesWorker.get_default_base_job_template()
    assert set(ours["variables"]["properties"]) - set(theirs["variables"]["properties"]) == {
        "gpu_count",
        "aws_secret",
        "node_selector",
    }


@pytest.mark.parametrize("deployment", _deployments("prefect.k8s.yaml"), ids=lambda d: d["name"])
def test_every_k8s_deployment_renders_a_job_with_its_gpu_image_and_secret(deployment, monkeypatch):
    _check_entrypoint(deployment)
    monkeypatch.setenv("NST_IMAGE", "registry.example.com/team/nst-batch:3f2a9c1d0b7e")  # set before prefect deploy
    job = _k8s_job(_resolved(deployment["work_pool"]["job_variables"], {}))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/team/nst-batch:3f2a9c1d0b7e"
    assert container["imagePullPolicy"] == "IfNotPresent"
    wanted_gpus = 0 if deployment["name"] == "dask-cluster" else 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == wanted_gpus
    assert container["envFrom"] == [{"secretRef": {"name": "nst-aws", "optional": True}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NST_TASK_RUNNER"] == ("dask" if wanted_gpus == 0 else "threads")
    assert not any(k.startswith("AWS_") for k in env), "credentials come from the Secret or the role, not the file"
    assert pod["serviceAccountName"] == "nst"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_k8s_gpu_request_outside_the_template_fails_the_check():
    variables = _resolved(_deployments("prefect.k8s.yaml")[0]["work_pool"]["job_variables"], {})
    variables["image"] = "x:1"
    variables["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    with pytest.raises(AssertionError, match="resources"):
        _k8s_job(variables)


def test_dask_cluster_example_has_the_operator_structure_and_gpu_workers():
    """deploy/dask-cluster.yaml against dask-kubernetes's own spec (make_cluster_spec) and the
    Kubernetes API's field names (the kubernetes client's models)."""
    from dask_kubernetes.operator import make_cluster_spec
    from kubernetes import client

    ours = yaml.safe_load((ROOT / "deploy" / "dask-cluster.yaml").read_text())
    theirs = make_cluster_spec("nst-dask", image="x", n_workers=2, resources={"limits": {"nvidia.com/gpu": 1}})
    assert (ours["apiVersion"], ours["kind"]) == (theirs["apiVersion"], theirs["kind"])
    assert set(ours["spec"]) <= set(theirs["spec"]) and set(ours["spec"]["worker"]) <= set(theirs["spec"]["worker"])
    assert set(ours["spec"]["scheduler"]) <= set(theirs["spec"]["scheduler"])

    def fields(model: type) -> set[str]:
        return set(model.attribute_map.values())

    for role in ("worker", "scheduler"):
        pod = ours["spec"][role]["spec"]
        assert set(pod) <= fields(client.V1PodSpec), set(pod) - fields(client.V1PodSpec)
        for container in pod["containers"]:
            assert set(container) <= fields(client.V1Container), set(container) - fields(client.V1Container)
            assert container["image"] == pod["containers"][0]["image"]
    assert set(ours["spec"]["scheduler"]["service"]) <= fields(client.V1ServiceSpec)
    worker = ours["spec"]["worker"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["args"][:3] == ["dask", "cuda", "worker"]
    assert "GPU=1" in worker["args"][worker["args"].index("--resources") + 1 :][:1]
    # The flow's address for it, in the Kubernetes deployment that uses it.
    name, namespace = ours["metadata"]["name"], ours["metadata"]["namespace"]
    dask_deployment = next(d for d in _deployments("prefect.k8s.yaml") if d["name"] == "dask-cluster")
    assert (
        dask_deployment["work_pool"]["job_variables"]["env"]["NST_DASK_ADDRESS"]
        == f"tcp://{name}-scheduler.{namespace}:8786"
    )


# --- The image ------------------------------------------------------------------------------


def test_dockerfile_installs_the_gpu_extra_with_the_constraints_and_lints_clean():
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install --no-cache-dir -c constraints\.txt '\.\[gpu\]'$", docker, re.M)
    assert re.search(r"^COPY pyproject.toml README.md constraints.txt ./$", docker, re.M)
    assert re.search(r"^USER 1000:1000$", docker, re.M), "the image must not run as root"
    for package in ("nst_batch", "manifests"):
        assert f"COPY {package} ./{package}" in docker
        assert f"!{package}/" in (ROOT / ".dockerignore").read_text()
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_constraints_file_for_every_install():
    constraints = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert "-c constraints.txt" in (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "-c constraints.txt" in (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in (ROOT / "README.md").read_text()  # the documented worker install
    # The versions this environment runs are the constrained ones (a drifted venv fails here).
    from importlib.metadata import version

    for package in (
        "torch",
        "prefect",
        "prefect-dask",
        "dask",
        "distributed",
        "SQLAlchemy",
        "prefect-docker",
        "prefect-kubernetes",
    ):
        assert version(package) == constraints[package], package


def test_pyproject_keeps_ranges_and_exact_versions_stay_in_constraints():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert not [r for r in requirements if "==" in r], "exact versions belong in constraints.txt"
    assert project["scripts"]["nst"] == "nst_batch.cli.main:main"
    assert "dask-cuda" in " ".join(project["optional-dependencies"]["gpu"])
