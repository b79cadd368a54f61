"""The approval rules of the ServiceNow simulator, through pysnc as people use ServiceNow.

Run by tests/contracts.rs with SERVICENOW_URL, SN_USER, SN_PASSWORD (the integration user),
PEOPLE_PASSWORD (every seeded person's) and CA_FILE set.
"""
import os

from pysnc import ServiceNowClient
from pysnc.exceptions import InsertException, RoleException, UpdateException

url = os.environ["SERVICENOW_URL"]
ca = os.environ["CA_FILE"]
integration = ServiceNowClient(url, (os.environ["SN_USER"], os.environ["SN_PASSWORD"]), verify=ca)
people = os.environ["PEOPLE_PASSWORD"]


def person(name):
    return ServiceNowClient(url, (name, people), verify=ca)


def change(client, sys_id):
    gr = client.GlideRecord("change_request")
    assert gr.get(sys_id), sys_id
    return gr


def approvals(client, sys_id):
    """The change's approval records as dicts (iterating a GlideRecord moves one cursor)."""
    gr = client.GlideRecord("sysapproval_approver")
    gr.add_query("sysapproval", sys_id)
    gr.query()
    found = []
    while gr.next():
        found.append({
            "sys_id": gr.get_value("sys_id"),
            "approver": gr.get_display_value("approver"),
            "state": gr.get_value("state"),
            "group": gr.get_display_value("group"),
        })
    return found


def decide(client, approval_sys_id, state, comment=None):
    gr = client.GlideRecord("sysapproval_approver")
    assert gr.get(approval_sys_id), approval_sys_id
    gr.state = state
    if comment:
        gr.comments = comment
    gr.update()


def move(client, sys_id, state):
    gr = change(client, sys_id)
    gr.state = state
    gr.update()


def open_change(requester, change_type="normal"):
    gr = integration.GlideRecord("change_request")
    gr.initialize()
    gr.short_description = "approval contract"
    gr.type = change_type
    gr.requested_by = requester
    return gr.insert()


normal = open_change("alice")
assert change(integration, normal).get_value("approval") == "not requested"
move(integration, normal, "-4")
move(integration, normal, "-3")
chg = change(integration, normal)
assert chg.get_value("approval") == "requested", chg.get_value("approval")
records = approvals(integration, normal)
assert [r["approver"] for r in records] == ["Carol Approver"], records
assert records[0]["state"] == "requested"
assert records[0]["group"] == "CAB Approval", records
print("ok: entering Authorize requests approval from the approval group")

try:
    move(integration, normal, "-2")
    raise AssertionError("Authorize -> Scheduled allowed without approval")
except (UpdateException, RoleException) as e:
    assert "approval" in str(e).lower(), str(e)
print("ok: Authorize -> Scheduled refused while approval is requested")

carols = approvals(integration, normal)[0]["sys_id"]
try:
    decide(person("alice"), carols, "approved")
    raise AssertionError("alice approved carol's approval record")
except (UpdateException, RoleException):
    pass
print("ok: nobody acts on another approver's record")

decide(person("carol"), carols, "approved", "looks good")
assert approvals(integration, normal)[0]["state"] == "approved"
assert change(integration, normal).get_value("approval") == "approved"
move(integration, normal, "-2")
assert change(integration, normal).get_value("state") == "-2"
print("ok: the approver approves, the rollup is approved, Scheduled follows")

journal = integration.GlideRecord("sys_journal_field")
journal.add_query("element_id", carols)
journal.query()
entries = []
while journal.next():
    entries.append((journal.get_value("element"), journal.get_value("name"),
                    journal.get_value("value"), journal.get_value("sys_created_by")))
assert entries == [("comments", "sysapproval_approver", "looks good", "carol")], entries
try:
    note = integration.GlideRecord("sys_journal_field")
    note.initialize()
    note.element_id = carols
    note.value = "forged"
    note.insert()
    raise AssertionError("a journal entry was written directly")
except (InsertException, RoleException, UpdateException):
    pass
print("ok: sys_journal_field keeps the approver's comment, with its author, and is read-only")

own = open_change("carol")
move(integration, own, "-4")
move(integration, own, "-3")
assert approvals(integration, own) == [], "the requester is never an approver"
print("ok: the requester is never one of the approvers")

rejected = open_change("alice")
move(integration, rejected, "-4")
move(integration, rejected, "-3")
decide(person("carol"), approvals(integration, rejected)[0]["sys_id"], "rejected", "not this week")
assert change(integration, rejected).get_value("approval") == "rejected"
try:
    move(integration, rejected, "-2")
    raise AssertionError("a rejected change was scheduled")
except (UpdateException, RoleException):
    pass
print("ok: a rejection rolls up and the change cannot be scheduled")

emergency = open_change("alice", "emergency")
move(integration, emergency, "-3")
records = approvals(integration, emergency)
assert sorted(r["approver"] for r in records) == ["Carol Approver", "System Administrator"], records
admins = [r for r in records if r["approver"] == "System Administrator"][0]["sys_id"]
decide(person("admin"), admins, "approved")
assert change(integration, emergency).get_value("approval") == "approved"
print("ok: an emergency change needs one emergency approver")

standard = open_change("alice", "standard")
assert change(integration, standard).get_value("approval") == "approved"
move(integration, standard, "-2")
assert approvals(integration, standard) == []
print("ok: a standard change is pre-approved and goes New -> Scheduled")
