"""A MongoDB-wire test server for meetbot's tests: mongoeco 4.11 plus three shims.

The Rust driver (mongodb 3.x) and mongoeco disagree in three places (see shared/peers.md):
1. integer command fields sent as int64 (limit, skip, batchSize, maxTimeMS, cursor.batchSize)
   are rejected: they are turned into plain ints;
2. replies' cursor.id must be an Int64 (mongoeco sends an Int32);
3. error replies (ok: 0) lack `code`: one is added.

Usage: python serve.py --port 27018 [--host 127.0.0.1] [--sqlite FILE] [--exit-on-stdin-eof]
Prints "ready <host>:<port>" on stdout once it accepts connections; stops on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
import sys

from bson.int64 import Int64

import mongoeco.wire.proxy as proxy
from mongoeco.core.bson_scalars import BsonInt64
from mongoeco.wire import AsyncMongoEcoProxyServer

INT_FIELDS = ("limit", "skip", "batchSize", "maxTimeMS", "ntoreturn")
# Code 8 is MongoDB's UnknownError; used only when mongoeco gives no code of its own.
FALLBACK_ERROR_CODE = 8

_decode = proxy.decode_op_msg
_encode = proxy.encode_op_msg_response


def _plain_ints(doc):
    for key in INT_FIELDS:
        value = doc.get(key)
        if isinstance(value, BsonInt64):
            doc[key] = int(value.value)
    return doc


def decode_op_msg(header, payload):
    request = _decode(header, payload)
    body = request.body
    _plain_ints(body)
    if isinstance(body.get("cursor"), dict):
        _plain_ints(body["cursor"])
    return request


def encode_op_msg_response(document, *, request_id, response_to):
    cursor = document.get("cursor")
    if isinstance(cursor, dict) and "id" in cursor:
        cursor["id"] = Int64(int(cursor["id"]))
    if document.get("ok") in (0, 0.0) and "code" not in document:
        document["code"] = FALLBACK_ERROR_CODE
    return _encode(document, request_id=request_id, response_to=response_to)


proxy.decode_op_msg = decode_op_msg
proxy.encode_op_msg_response = encode_op_msg_response


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sqlite", help="persist in this SQLite file (default: in memory)")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when standard input closes (the test process that started it has exited)",
    )
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host != "localhost":
        sys.exit("refusing to listen beyond loopback: " + args.host)
    engine = None
    if args.sqlite:
        from mongoeco.engines.sqlite import SQLiteEngine

        engine = SQLiteEngine(args.sqlite)
    server = AsyncMongoEcoProxyServer(host=args.host, port=args.port, engine=engine)
    address = await server.start()
    print(f"ready {address.host}:{address.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
