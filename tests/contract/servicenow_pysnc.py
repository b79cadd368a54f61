"""ServiceNow's own Python client (pysnc) against the simulator, over TLS with the generated CA.

Run by tests/contracts.rs with SERVICENOW_URL, SN_USER, SN_PASSWORD, SN_CLIENT_ID,
SN_CLIENT_SECRET and CA_FILE set.
"""
import os

from pysnc import ServiceNowClient
from pysnc.auth import ServiceNowPasswordGrantFlow

url = os.environ["SERVICENOW_URL"]
ca = os.environ["CA_FILE"]
basic = ServiceNowClient(url, (os.environ["SN_USER"], os.environ["SN_PASSWORD"]), verify=ca)

gr = basic.GlideRecord("change_request")
gr.initialize()
gr.short_description = "pysnc contract check"
gr.description = "created by the official client"
gr.type = "normal"
gr.requested_by = "alice"
sys_id = gr.insert()
assert sys_id and len(sys_id) == 32, sys_id
print("ok: insert over TLS with basic auth")

read = basic.GlideRecord("change_request")
assert read.get(sys_id), "record readable by sys_id"
number = read.get_value("number")
assert number.startswith("CHG") and len(number) == 10, number
assert read.get_value("state") == "-5" and read.get_display_value("state") == "New"
assert read.get_display_value("requested_by") == "Alice Network", read.get_display_value("requested_by")
print("ok: get with display values and reference resolution")

read.state = "-4"
read.work_notes = "moving to assess"
read.update()
again = basic.GlideRecord("change_request")
again.get(sys_id)
assert again.get_value("state") == "-4", again.get_value("state")
assert again.get_value("work_notes") == "", "journal fields read back empty"
print("ok: update, journal field")

query = basic.GlideRecord("change_request")
query.add_query("number", number)
query.query()
assert len(query) == 1, len(query)
numbers = [r.get_value("number") for r in query]
assert numbers == [number], numbers
print("ok: encoded query with X-Total-Count")

oauth = ServiceNowClient(
    url,
    ServiceNowPasswordGrantFlow(
        os.environ["SN_USER"], os.environ["SN_PASSWORD"], os.environ["SN_CLIENT_ID"], os.environ["SN_CLIENT_SECRET"]
    ),
    verify=ca,
)
via_oauth = oauth.GlideRecord("change_request")
assert via_oauth.get(sys_id), "readable with an OAuth token"
print("ok: OAuth password grant")

gone = basic.GlideRecord("change_request")
gone.get(sys_id)
gone.delete()
check = basic.GlideRecord("change_request")
assert not check.get(sys_id), "deleted"
print("ok: delete")
