"""bridge_local's trio client (no Tox: a stand-in app port on 127.0.0.1 that answers lines
as a bridge would): an error inside ``async with open_client(...)`` comes out as itself, and
a request cancelled while it waits for its reply leaves that reply to no one.

An error once vanished: the client's clean-up awaited in a cancelled scope, the Cancelled
took the error's place and was absorbed, so a failed assert in a test's client block passed.
A cancelled request's reply once went to the next request (issue 14: bench mesh's
download took a pong's 2002 for its 5001)."""

from __future__ import annotations

from functools import partial

import json

import pytest
import trio

from bridge_local.client import BridgeError, open_client, open_nursery


async def app_port(nursery: trio.Nursery, answer: bytes) -> int:
    """A port that answers every line with ``answer`` (and keeps the connection open)."""
    async def handle(stream: trio.SocketStream) -> None:
        async for data in stream:
            for _ in range(data.count(b"\n")):
                await stream.send_all(answer)
    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def test_an_error_in_the_client_block_comes_out_as_itself(nursery):
    port = await app_port(nursery, b"")
    with pytest.raises(ZeroDivisionError):
        async with open_client(port):
            1 / 0
    with pytest.raises(AssertionError, match="inside"):
        async with open_client(port):
            await trio.sleep(0.01)
            raise AssertionError("inside")


async def test_a_refused_login_raises_bridge_error(nursery):
    port = await app_port(nursery, b'{"command":9000,"code":9015,"message":"wrong token"}\n')
    with pytest.raises(BridgeError, match="9015"):
        async with open_client(port, name="alice"):
            pytest.fail("logged in")


async def test_a_cancelled_client_block_is_cancelled_not_an_error(nursery):
    port = await app_port(nursery, b"")
    with trio.move_on_after(0.05) as scope:
        async with open_client(port):
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_open_nursery_lets_one_error_out_as_itself_and_keeps_several_a_group():
    async def fail(exc: Exception) -> None:
        raise exc
    with pytest.raises(KeyError):
        async with open_nursery() as nursery:
            nursery.start_soon(fail, KeyError("one"))
    with pytest.raises(ExceptionGroup) as info:
        async with open_nursery() as nursery:
            nursery.start_soon(fail, KeyError("one"))
            nursery.start_soon(fail, ValueError("two"))
    assert {type(e) for e in info.value.exceptions} == {KeyError, ValueError}


async def test_a_request_cancelled_before_its_reply_does_not_hand_that_reply_to_the_next():
    # The bridge answers in order; the first request's answer is late (a loaded bridge).
    async def handle(stream: trio.SocketStream) -> None:
        buffer = b""
        async for data in stream:
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                await trio.sleep(request["delay"])
                await stream.send_all(json.dumps({"command": 2002, "n": request["n"]}).encode()
                                      + b"\n")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with open_client(port) as client:
                with trio.move_on_after(0.05) as scope:  # a task cancelled mid-request
                    await client.request({"command": 1002, "n": 1, "delay": 0.3})
                assert scope.cancelled_caught
                assert (await client.request({"command": 1002, "n": 2, "delay": 0}))["n"] == 2
                with trio.move_on_after(0.05):  # twice in a row, then a raw next_reply
                    await client.request({"command": 1002, "n": 3, "delay": 0.2})
                with trio.move_on_after(0.05):
                    await client.request({"command": 1002, "n": 4, "delay": 0.2})
                await client.send_obj({"command": 1002, "n": 5, "delay": 0})
                assert (await client.next_reply())["n"] == 5
            nursery.cancel_scope.cancel()
