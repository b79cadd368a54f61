"""Checks docker-compose.yml without a Docker engine: its shape (the parts of the Compose
specification it uses), that services, volumes and build contexts it names exist, that every
file it mounts from this repository exists, that every CHANGEFLOW_* variable it sets is one
changeflow reads, and that the Dockerfile copies only what exists. Prints `ok:` per check.

Run by tests/deploy.rs with the repository root as the working directory.
"""
import re
import sys
from pathlib import Path

import yaml

root = Path.cwd()
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
assert isinstance(compose, dict), "a mapping at the top"
assert set(compose) <= {"services", "volumes", "networks", "configs", "secrets", "name"}, set(compose)
services = compose["services"]
volumes = set((compose.get("volumes") or {}).keys())
print(f"ok: parsed, {len(services)} services")

known_keys = {"image", "build", "command", "environment", "ports", "volumes", "depends_on",
              "profiles", "user", "healthcheck", "restart", "entrypoint", "networks"}
for name, service in services.items():
    assert set(service) <= known_keys, (name, set(service) - known_keys)
    assert "image" in service or "build" in service, f"{name}: neither image nor build"
    if "build" in service:
        context = root / (service["build"] if isinstance(service["build"], str) else service["build"]["context"])
        assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"
    for dependency in service.get("depends_on", []):
        assert dependency in services, f"{name} depends on unknown {dependency}"
    for port in service.get("ports", []):
        assert re.fullmatch(r"\d+:\d+", str(port)), f"{name}: port {port}"
    assert isinstance(service.get("profiles", []), list), name
print("ok: every service has an image or a build, and names only existing services")

for name, service in services.items():
    for mount in service.get("volumes", []):
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (root / source).exists(), f"{name} mounts missing {source}"
        elif not source.startswith("/"):
            assert source in volumes, f"{name} mounts undeclared volume {source}"
print("ok: every mounted file exists and every named volume is declared")

cli = (root / "src/cli.rs").read_text()
known_env = set(re.findall(r'env = "(CHANGEFLOW_[A-Z_]+)"', cli))
for name, service in services.items():
    for variable in (service.get("environment") or {}):
        if variable.startswith("CHANGEFLOW_"):
            assert variable in known_env, f"{name}: changeflow reads no {variable}"
print(f"ok: every CHANGEFLOW_ variable set is one changeflow reads ({len(known_env)} known)")

for line in (root / "Dockerfile").read_text().splitlines():
    words = line.split()
    if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
        for source in words[1:-1]:
            assert (root / source).exists(), f"Dockerfile copies missing {source}"
print("ok: the Dockerfile copies only what exists")
sys.exit(0)
