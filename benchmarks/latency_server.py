"""A loopback OpenAI-compatible chat-completions server that answers every request after a fixed delay, for
measuring what the library itself costs per request (benchmarks/overhead.py). Plain asyncio, HTTP/1.1 keep-alive,
no framework: its own cost per request is a few tens of microseconds, in its own process.

    python benchmarks/latency_server.py --port 8123 --latency-s 0.2 [--reply '\\boxed{3}']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


async def serve(port: int, latency_s: float, reply: str) -> None:
    body = json.dumps(
        {
            "id": "chatcmpl-0",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }
    ).encode()
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(latency_s)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print(f"listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--reply", default="The answer is \\boxed{3}.")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.latency_s, args.reply))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
