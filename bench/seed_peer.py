"""A seed-style MCP server, the baseline `make bench` compares changeflow's reads with.

The seed's design, in miniature: a Python MCP server on the official SDK whose read tools call
Catalyst Center directly (no workflow, no audit, no policy, no token check). It logs in once,
keeps the token, and reuses one HTTPS connection pool, as a careful seed server would.

    python bench/seed_peer.py --endpoints DATA_DIR/endpoints.json --port 8765

serves streamable HTTP at http://127.0.0.1:8765/mcp with `list_devices` and `get_template`.
"""

import argparse
import json

import httpx2 as httpx
from mcp.server.mcpserver import MCPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", required=True, help="changeflow dev's endpoints.json")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with open(args.endpoints) as f:
        endpoints = json.load(f)
    base = endpoints["catalyst_center"].rstrip("/")
    credentials = endpoints["credentials"]
    verify = endpoints.get("ca_file") or True
    catalyst = httpx.AsyncClient(base_url=base, verify=verify, timeout=30)
    token: dict[str, str] = {}

    async def get(path: str, params: dict | None = None):
        if "value" not in token:
            response = await catalyst.post(
                "/dna/system/api/v1/auth/token",
                auth=(credentials["catalyst_username"], credentials["catalyst_password"]),
            )
            response.raise_for_status()
            token["value"] = response.json()["Token"]
        response = await catalyst.get(path, params=params, headers={"X-Auth-Token": token["value"]})
        response.raise_for_status()
        return response.json()

    server = MCPServer("seed-style-catalyst", log_level="WARNING")

    @server.tool()
    async def list_devices(limit: int = 50) -> dict:
        """Network devices in Catalyst Center's inventory."""
        body = await get("/dna/intent/api/v1/network-device", {"limit": limit})
        return {"devices": body.get("response", [])}

    @server.tool()
    async def get_template(template_id: str) -> dict:
        """A configuration template with its content and parameters."""
        return await get(f"/dna/intent/api/v1/template-programmer/template/{template_id}")

    server.run("streamable-http", host="127.0.0.1", port=args.port, json_response=True)


if __name__ == "__main__":
    main()
