"""An MCP client for chat-api, on the official Python `mcp` SDK (run it through mcp-client.sh).

    client.py [--mode legacy|auto] URL TOKEN tools
    client.py [--mode legacy|auto] URL TOKEN call NAME [JSON]
    client.py [--mode legacy|auto] URL TOKEN scenario

Prints one JSON document on stdout. Tool errors (isError) are results, not failures; a
refused connection (401) or a protocol error exits with status 1 and says why on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def call_record(tool: str, arguments: dict[str, Any], result: Any) -> dict[str, Any]:
    return {
        "tool": tool,
        "arguments": arguments,
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [block.text for block in result.content if getattr(block, "type", None) == "text"],
    }


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    # The SDK validates a successful result's structured content against the tool's
    # outputSchema, so a result that strays from its schema fails here.
    return call_record(tool, arguments, await client.call_tool(tool, arguments))


async def scenario(client: Client) -> list[dict[str, Any]]:
    """Each tool once on a fresh task, then the mistakes a model makes."""
    calls = []
    added = await call(
        client,
        "add_task",
        {
            "title": "Water the plants",
            "priority": "high",
            "tags": ["home"],
            "due_at": "2026-12-01T09:00",
            "time_zone": "Europe/Berlin",
            "recurrence": "weekly",
        },
    )
    calls.append(added)
    if added["is_error"]:
        return calls
    task_id = added["structured"]["id"]
    calls.append(await call(client, "list_tasks", {"q": "plants", "status": "pending", "sort": "due"}))
    calls.append(
        await call(client, "update_task", {"task_id": task_id, "description": "Use rain water", "due_at": None})
    )
    calls.append(await call(client, "complete_task", {"task_id": task_id}))
    calls.append(await call(client, "delete_task", {"task_id": task_id}))
    calls.append(await call(client, "add_task", {"title": "Bad one", "priority": "critical"}))
    calls.append(await call(client, "complete_task", {"task_id": str(uuid.uuid4())}))
    return calls


async def run(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        transport = streamable_http_client(args.url, http_client=http)
        async with Client(transport, mode=args.mode) as client:
            out: dict[str, Any] = {
                "protocol_version": client.protocol_version,
                "server_info": dump(client.server_info) if client.server_info else None,
            }
            listed = await client.list_tools()
            out["tools"] = [dump(tool) for tool in listed.tools]
            if args.command == "call":
                arguments = json.loads(args.arguments)
                out["calls"] = [await call(client, args.name, arguments)]
            elif args.command == "scenario":
                out["calls"] = await scenario(client)
            return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["legacy", "auto"], default="legacy")
    parser.add_argument("url")
    parser.add_argument("token")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tools")
    one = commands.add_parser("call")
    one.add_argument("name")
    one.add_argument("arguments", nargs="?", default="{}")
    commands.add_parser("scenario")
    args = parser.parse_args()
    try:
        out = asyncio.run(run(args))
    except BaseException as e:  # noqa: BLE001 - report any failure, grouped ones included
        print(f"mcp-client: {describe(e)}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def describe(e: BaseException) -> str:
    """The innermost causes of an (exception-group) failure, e.g. an HTTP 401."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in e.exceptions)
    return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())
