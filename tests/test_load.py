"""Load (issue 6, item 3): 50 clients on each of two bridges each send messages to clients
on the other side while a file moves between the bridges.

Asserted: every message delivered exactly once, in order per sender and receiver; every
client sent and received its share (none starved); the file arrives with its md5. Speed
(per-client p99, msgs/s) is reported by bench/proving.py, not asserted.

The full 100 x 1,000 takes ~1.5 minutes on 2 shared cores, so CI runs it;
``TOXBRIDGE_LOAD_MESSAGES=100`` makes a quicker run (a multiple of 50 keeps the shares even)."""

from __future__ import annotations

import os

import pytest

from bench.proving import load

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("load"), pytest.mark.timeout(900)]

CLIENTS = 50  # per bridge
MESSAGES = int(os.environ.get("TOXBRIDGE_LOAD_MESSAGES", "1000"))


async def test_100_clients_every_message_exactly_once_in_order_none_starved(tox_network,
                                                                            tmp_path):
    f = await load(tox_network, tmp_path, clients=CLIENTS, messages=MESSAGES, file_mb=16)
    print({k: v for k, v in f.items() if k != "per_client"})
    total = 2 * CLIENTS * MESSAGES
    assert f["load_messages_sent"] == total
    assert f["load_codes"] == {"201": total}, f["load_codes"]
    assert f["load_messages_delivered_once"] == total
    assert (f["load_messages_duplicated"], f["load_messages_reordered"]) == (0, 0)
    # Nobody starved: each client received exactly its share (senders spread evenly).
    assert all(c["received"] == MESSAGES and c["sent"] == MESSAGES
               for c in f["per_client"].values()), f["per_client"]
    assert f["load_file_md5_ok"]
