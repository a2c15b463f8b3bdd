"""The one Dockerfile builds any service (checked statically: no image builds offline)."""

from __future__ import annotations

import re

import yaml

from tools.deploy import DEPLOY, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_image_runs_as_the_non_root_user_the_pods_expect() -> None:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, flags=re.M)
    defaults = yaml.safe_load((DEPLOY / "k8s/base/service-defaults.yaml").read_text())
    pod = defaults["spec"]["template"]["spec"]["securityContext"]
    assert (int(user[0]), int(user[1])) == (pod["runAsUser"], pod["runAsGroup"])
    assert int(user[0]) != 0


def test_the_image_holds_the_pinned_runtime_and_every_service_and_the_bootstrap() -> None:
    assert "pip install --require-hashes -r requirements.txt" in DOCKERFILE
    assert "COPY services/ services/" in DOCKERFILE
    assert "tools/bootstrap.py" in DOCKERFILE  # the pods' init container
    assert "PYTHONDONTWRITEBYTECODE=1" in DOCKERFILE  # read-only root filesystem
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "services" not in ignored and "tools" not in ignored
