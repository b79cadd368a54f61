"""Cisco's dnacentersdk (API 2.3.7.9) syncing a template from Git into the Catalyst Center
simulator as a new committed version, as contracts/catalyst-center.md "Template authoring"
describes: find or create the project, create or update the template, commit a version whose
comment names the commit, confirm the version went up; and the refusals.

Run by tests/contracts.rs with CATALYST_URL, CATALYST_USER, CATALYST_PASSWORD and CA_FILE set.
"""
import os
import time

from dnacentersdk import DNACenterAPI
from dnacentersdk.exceptions import ApiError

api = DNACenterAPI(
    username=os.environ["CATALYST_USER"],
    password=os.environ["CATALYST_PASSWORD"],
    base_url=os.environ["CATALYST_URL"],
    version="2.3.7.9",
    verify=os.environ["CA_FILE"],
)
ct = api.configuration_templates


def wait(task_id):
    for _ in range(50):
        task = api.task.get_task_by_id(task_id)["response"]
        if task.get("endTime"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} never ended")


def project_id(name):
    found = [p for p in ct.get_projects(name=name) if p["name"] == name]
    if found:
        return found[0]["id"], found[0]
    task = wait(ct.create_project(name=name, description="templates synced from Git")["response"]["taskId"])
    assert not task["isError"], task
    return task["data"], None


def versions(template_id):
    listed = ct.gets_all_the_versions_of_a_given_template(template_id)
    assert isinstance(listed, list) and listed[0]["templateId"] == template_id, listed
    return sorted(int(v["version"]) for v in listed[0]["versionsInfo"])


BODY = dict(language="VELOCITY", softwareType="IOS-XE", deviceTypes=[{"productFamily": "Switches and Hubs"}])

# A new project and a new template: create, commit with the Git commit in the comment.
pid, existing = project_id("Git Templates")
assert existing is None
pid_again, existing = project_id("Git Templates")
assert pid_again == pid and existing["templates"] == [], existing
print("ok: project created once, then found by exact name")

content_v1 = "ntp server $ntp_primary prefer iburst\nntp server $ntp_secondary\n"
created = wait(ct.create_template(project_id=pid, name="ntp-servers.vtl", projectName="Git Templates",
                                  templateContent=content_v1, **BODY)["response"]["taskId"])
assert not created["isError"] and "Successfully created template" in created["progress"], created
template_id = created["data"]
detail = ct.get_template_details(template_id)
assert detail["templateContent"] == content_v1
assert {p["parameterName"] for p in detail["templateParams"]} == {"ntp_primary", "ntp_secondary"}, detail["templateParams"]
assert versions(template_id) == []
print("ok: template created (parameters derived from the content), not yet committed")

committed = wait(ct.version_template(templateId=template_id, comments="git 1111111111111111111111111111111111111111")["response"]["taskId"])
assert not committed["isError"], committed
assert versions(template_id) == [1]
print("ok: version 1 committed")

# The same template again from a newer commit: update the draft, commit version 2.
project = [p for p in ct.get_projects(name="Git Templates") if p["name"] == "Git Templates"][0]
found = [t for t in project["templates"] if t["name"] == "ntp-servers.vtl"]
assert [t["id"] for t in found] == [template_id], project
content_v2 = content_v1.replace("iburst", "iburst burst")
updated = wait(ct.update_template(id=template_id, name="ntp-servers.vtl", projectName="Git Templates", projectId=pid,
                                  templateContent=content_v2, **BODY)["response"]["taskId"])
assert not updated["isError"] and "Successfully updated template" in updated["progress"], updated
latest = ct.get_template_details(template_id, latest_version=True)
assert latest["templateContent"] == content_v1 and latest["version"] == "1", "the draft is not deployed until committed"
wait(ct.version_template(templateId=template_id, comments="git 2222222222222222222222222222222222222222")["response"]["taskId"])
assert versions(template_id) == [1, 2]
info = ct.gets_all_the_versions_of_a_given_template(template_id)[0]["versionsInfo"]
assert [v["versionComment"] for v in info] == ["git 1111111111111111111111111111111111111111", "git 2222222222222222222222222222222222222222"]
latest = ct.get_template_details(template_id, latest_version=True)
assert latest["templateContent"] == content_v2 and latest["version"] == "2", latest
print("ok: updated and committed as version 2, comments name the commits")

# The newer commit call and the versions listing.
note = wait(ct.commit_template_for_a_new_version(template_id, commitNote="git 3333")["response"]["taskId"])
assert not note["isError"], note
listed = ct.get_template_versions(template_id)["response"]
assert [v["version"] for v in listed] == [3, 2, 1] and listed[0]["RegularTemplate"]["templateContent"] == content_v2, listed
print("ok: commit_template_for_a_new_version and get_template_versions")

# Deploying previews the committed version.
preview = ct.preview_template(templateId=template_id, params={"ntp_primary": "10.0.0.1", "ntp_secondary": "10.0.0.2"})
assert preview["cliPreview"] == "ntp server 10.0.0.1 prefer iburst burst\nntp server 10.0.0.2\n", preview
print("ok: the committed version previews")

# A committed version's own id names that version: its details and preview are version 1's.
first = [v for v in info if v["version"] == "1"][0]["id"]
pinned = ct.get_template_details(first, latest_version=True)
assert pinned["templateContent"] == content_v1 and pinned["version"] == "1", pinned
preview = ct.preview_template(templateId=first, params={"ntp_primary": "10.0.0.1", "ntp_secondary": "10.0.0.2"})
assert preview["cliPreview"] == "ntp server 10.0.0.1 prefer iburst\nntp server 10.0.0.2\n", preview
print("ok: a version id reads and previews that version")

# Refusals: a create lacking a mandatory field, a duplicate name, an unknown template.
try:
    ct.create_template(project_id=pid, name="no-family", projectName="Git Templates", language="VELOCITY",
                       softwareType="IOS-XE", deviceTypes=[], templateContent="x")
    raise AssertionError("a create without deviceTypes was accepted")
except ApiError as e:
    assert e.status_code == 400, e
duplicate = wait(ct.create_template(project_id=pid, name="ntp-servers.vtl", projectName="Git Templates",
                                    templateContent="x", **BODY)["response"]["taskId"])
assert duplicate["isError"] and "already exists" in duplicate["failureReason"], duplicate
try:
    ct.version_template(templateId="00000000-0000-0000-0000-000000000000", comments="x")
    raise AssertionError("an unknown template was versioned")
except ApiError as e:
    assert e.status_code == 404, e
print("ok: missing deviceTypes 400, duplicate name a failed task, unknown template 404")
