"""Command Runner through Cisco's own SDK (dnacentersdk, API 2.3.7.9) against the simulator:
legit-reads, a read-only request, its task, and the output file, as a pre-change check makes them.

Run by tests/contracts.rs with CATALYST_URL, CATALYST_USER, CATALYST_PASSWORD and CA_FILE set.
"""
import json
import os
import tempfile
import time
import warnings

from dnacentersdk import DNACenterAPI

api = DNACenterAPI(
    username=os.environ["CATALYST_USER"],
    password=os.environ["CATALYST_PASSWORD"],
    base_url=os.environ["CATALYST_URL"],
    version="2.3.7.9",
    verify=os.environ["CA_FILE"],
)

warnings.simplefilter("ignore", DeprecationWarning)  # download_a_file_by_fileid's own notice


def download(file_id):
    """The file's JSON, downloaded as the SDK downloads files."""
    with tempfile.TemporaryDirectory() as directory:
        saved = api.file.download_a_file_by_fileid(file_id=file_id, save_file=True, dirpath=directory)
        with open(saved.path, "rb") as f:
            return json.load(f)


keywords = api.command_runner.get_all_keywords_of_clis_accepted()["response"]
assert "show" in keywords and "ping" in keywords and "configure" not in keywords, keywords
print("ok: legit-reads lists the read-only keywords")

device = api.devices.get_device_list(hostname="sj-access-01")["response"][0]
asked = ["show version", "show running-config | include hostname", "show interfaces status",
         "show ntp associations", "configure terminal"]
submitted = api.command_runner.run_read_only_commands_on_devices(
    commands=asked, deviceUuids=[device["id"]], name="pre-check", description="contract", timeout=60,
)
task_id = submitted["response"]["taskId"]
assert submitted["response"]["url"] == f"/api/v1/task/{task_id}", submitted
deadline = time.time() + 30
while True:
    task = api.task.get_task_by_id(task_id)["response"]
    if task.get("endTime"):
        break
    assert time.time() < deadline, "command task never ended"
    time.sleep(0.2)
assert task["isError"] is False, task
file_id = json.loads(task["progress"])["fileId"]
print("ok: read-request gives a task whose progress names the file")

# The SDK logs every response body before it returns (pprint_response_info, evaluated even with
# debug logging off), which consumes the stream: with save_file=False its DownloadResponse has
# the status and the attachment's name but no bytes, whatever the server. With save_file=True
# it writes the bytes it kept while logging, which is how integrations read the file.
streamed = api.file.download_a_file_by_fileid(file_id=file_id, save_file=False)
assert streamed.status == 200 and streamed.filename == f"cli-output-{file_id}.json", streamed.headers
entries = download(file_id)
assert isinstance(entries, list) and len(entries) == 1, entries
entry = entries[0]
assert entry["deviceUuid"] == device["id"], entry
answers = entry["commandResponses"]
assert "Cisco IOS XE Software" in answers["SUCCESS"]["show version"], answers
assert answers["SUCCESS"]["show running-config | include hostname"] == "hostname sj-access-01\n", answers
assert "connected" in answers["SUCCESS"]["show interfaces status"], answers
assert "show ntp associations" in answers["SUCCESS"], answers
assert answers["BLACKLISTED"] == {"configure terminal": ""}, answers
assert answers["FAILURE"] == {}, answers
print("ok: the file holds each command's output; configure terminal is blacklisted")

gone = api.devices.get_device_list(hostname="lon-access-03")["response"][0]
submitted = api.command_runner.run_read_only_commands_on_devices(
    commands=["show version"], deviceUuids=[gone["id"]], name="unreachable",
)
task_id = submitted["response"]["taskId"]
while not api.task.get_task_by_id(task_id)["response"].get("endTime"):
    time.sleep(0.2)
file_id = json.loads(api.task.get_task_by_id(task_id)["response"]["progress"])["fileId"]
entry = download(file_id)[0]
assert entry["commandResponses"]["FAILURE"] == {"show version": "Device is not reachable"}, entry
print("ok: an unreachable device answers every command under FAILURE")
