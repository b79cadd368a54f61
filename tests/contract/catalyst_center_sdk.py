"""Cisco's own Catalyst Center SDK (dnacentersdk, API 2.3.7.9) against the simulator.

Run by tests/contracts.rs with CATALYST_URL, CATALYST_USER, CATALYST_PASSWORD and CA_FILE set.
Every call is one a real integration makes; any contract mismatch raises.
"""
import os
import re
import time

from dnacentersdk import DNACenterAPI

api = DNACenterAPI(
    username=os.environ["CATALYST_USER"],
    password=os.environ["CATALYST_PASSWORD"],
    base_url=os.environ["CATALYST_URL"],
    version="2.3.7.9",
    verify=os.environ["CA_FILE"],
)
print("ok: authenticated with a token")

projects = api.configuration_templates.get_projects()
assert isinstance(projects, list) and len(projects) >= 2, projects
names = {p["name"] for p in projects}
assert "Campus Baseline" in names, names
v2 = api.configuration_templates.get_projects_details(name="Campus Baseline")
assert v2["version"] == "1.0" and v2["response"][0]["name"] == "Campus Baseline", v2
print("ok: projects v1 (bare array) and v2 (envelope)")

templates = api.configuration_templates.gets_the_templates_available()
ntp = next(t for t in templates if t["name"] == "NTP Servers")
assert ntp["projectName"] == "Campus Baseline" and ntp["versionsInfo"], ntp
detail = api.configuration_templates.get_template_details(ntp["templateId"], latest_version=True)
assert detail["language"] == "VELOCITY", detail["language"]
params = {p["parameterName"]: p["dataType"] for p in detail["templateParams"]}
assert params["ntp_primary"] == "IPADDRESS", params
versions = api.configuration_templates.get_template_versions(ntp["templateId"])
assert versions["response"][0]["templateId"] == ntp["templateId"], versions
print("ok: templates list, detail with typed parameters, versions")

count = api.devices.get_device_count()
assert count["response"] == 12, count
devices = api.devices.get_device_list(hostname="sj-access-01")["response"]
assert len(devices) == 1 and devices[0]["reachabilityStatus"] == "Reachable", devices
device = devices[0]
unreachable = api.devices.get_device_list(hostname="lon-access-03")["response"][0]
assert unreachable["reachabilityStatus"] == "Unreachable", unreachable
page = api.devices.get_device_list(offset=11, limit=5)["response"]
assert len(page) == 2, len(page)
print("ok: network devices, count, 1-based paging, an unreachable device")

preview = api.configuration_templates.preview_template(
    templateId=ntp["templateId"],
    deviceId=device["id"],
    params={"ntp_primary": "10.1.1.1", "ntp_secondary": "10.1.1.2"},
)
assert "ntp server 10.1.1.1 prefer" in preview["cliPreview"], preview
assert not preview["validationErrors"], preview
print("ok: template preview")

deployed = api.configuration_templates.deploy_template_v2(
    templateId=ntp["templateId"],
    forcePushTemplate=False,
    isComposite=False,
    targetInfo=[{
        "id": device["id"],
        "type": "MANAGED_DEVICE_UUID",
        "params": {"ntp_primary": "10.1.1.1", "ntp_secondary": "10.1.1.2"},
    }],
)
task_id = deployed["response"]["taskId"]
assert deployed["response"]["url"] == f"/api/v1/task/{task_id}", deployed
deadline = time.time() + 30
while True:
    task = api.task.get_task_by_id(task_id)["response"]
    if task.get("endTime"):
        break
    assert time.time() < deadline, "deployment task never ended"
    time.sleep(0.2)
assert task["isError"] is False, task
deployment_id = re.search(r"Template\s+Deployment\s+Id:\s+([a-f0-9-]+)", task["progress"]).group(1)
status = api.configuration_templates.get_template_deployment_status(deployment_id)
assert status["status"] == "SUCCESS", status
assert status["devices"][0]["status"] == "SUCCESS" and status["devices"][0]["name"] == "sj-access-01", status
assert all(isinstance(v, str) for v in status["devices"][0].values()), status
print("ok: asynchronous deploy v2, task polling, deployment status")
