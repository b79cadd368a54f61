"""The official MCP Python SDK (`mcp` 2.x) as a client of changeflow's front door.

Run by tests/mcp_frontdoor.rs with MCP_URL, MCP_TOKEN, MCP_MODE ("legacy" or "2026-07-28"),
TEMPLATE_ID and DEVICE. Prints one `ok:` line per check; any mismatch raises.
"""
import asyncio
import os

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def field(obj, *names):
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    raise AttributeError(names)


async def main():
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {os.environ['MCP_TOKEN']}"})
    transport = streamable_http_client(os.environ["MCP_URL"], http_client=http)
    async with Client(transport, mode=os.environ["MCP_MODE"]) as client:
        info = client.server_info
        assert info is None or info.name == "changeflow", info
        print("ok: connected")

        tools = await client.list_tools()
        names = [t.name for t in tools.tools]
        for expected in ["deploy_template", "list_templates", "get_change_request", "get_change_status", "cancel_change"]:
            assert expected in names, names
        print("ok: listed tools")

        templates = await client.call_tool("list_templates", {})
        assert not field(templates, "is_error", "isError"), templates
        listed = field(templates, "structured_content", "structuredContent")["templates"]
        assert any(t["name"] == "NTP Servers" for t in listed), listed
        print("ok: read tool answered (list_templates, run as a workflow)")

        missing = await client.call_tool("get_change_status", {"change_id": "change-that-does-not-exist"})
        assert field(missing, "is_error", "isError"), missing
        print("ok: read tool answered (unknown change is a tool error)")

        progress = []

        async def on_progress(value, total, message):
            progress.append((value, message))

        arguments = {
            "template_id": os.environ["TEMPLATE_ID"],
            "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
            "devices": [os.environ["DEVICE"]],
            "idempotency_key": f"python-{os.environ['MCP_MODE']}",
            "change_type": "standard",
        }
        result = await client.call_tool("deploy_template", arguments, progress_callback=on_progress)
        assert not field(result, "is_error", "isError"), result
        content = field(result, "structured_content", "structuredContent")
        assert content["outcome"] == "succeeded", content
        assert content["ticket_number"].startswith("CHG"), content
        print("ok: deploy_template succeeded")
        assert progress, "progress notifications arrived"
        assert any("deploying" in (m or "") for _, m in progress), progress
        print("ok: progress notifications received")


asyncio.run(main())
