#!/usr/bin/env python3
"""The peer we compare with: python-hl7's own asyncio MLLP server, parsing each message with
``hl7.parse`` and answering ``create_ack()`` — no storage, no rules, no alerts.

    python bench/peer_python_hl7.py --port 2590
"""

from __future__ import annotations

import argparse
import asyncio

import hl7
import hl7.mllp


async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    # UTF-8 so the bench message's MSH-18 "UNICODE UTF-8" content decodes (the default is ASCII)
    async with await hl7.mllp.start_hl7_server(handle, "127.0.0.1", port, encoding="utf-8") as server:
        print(f"listening {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=2590)
    asyncio.run(main(ap.parse_args().port))
