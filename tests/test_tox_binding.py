"""The toxcore binding on real libtoxcore: identity, friends, errors, profiles, life cycle.

Nothing here needs a network; everything calls the real library."""

from __future__ import annotations

import os
import stat

import pytest

from toxbridge.network import loopback_options
from toxbridge.tox import (
    BootstrapError,
    Connection,
    CustomPacketError,
    DecryptionError,
    FriendAddError,
    FriendDeleteError,
    FriendNotFoundError,
    GetPortError,
    ProfileError,
    SendMessageError,
    Tox,
    ToxClosedError,
    ToxNewError,
    load_profile,
    save_profile,
)


@pytest.fixture
def tox():
    with Tox(loopback_options()) as t:
        yield t


@pytest.fixture
def other():
    with Tox(loopback_options()) as t:
        yield t


def test_identity_sizes_and_consistency(tox):
    assert len(tox.address) == 38 and len(tox.address_hex) == 76
    assert tox.address[:32] == tox.public_key
    assert len(tox.dht_id) == 32 and tox.dht_id != tox.public_key
    assert tox.address[32:36] == tox.nospam.to_bytes(4, "big")
    assert 1 <= tox.udp_port < 65536
    assert tox.connection_status is Connection.NONE
    assert 0 < tox.iteration_interval() <= 1


def test_nospam_set_changes_address_but_not_key(tox):
    before = tox.address
    tox.nospam = 0x12345678
    assert tox.nospam == 0x12345678
    assert tox.address != before and tox.address[:32] == before[:32]
    with pytest.raises(ValueError):
        tox.nospam = 2**32


def test_tcp_port_not_bound_unless_relay(tox):
    with pytest.raises(GetPortError) as exc:
        tox.tcp_port
    assert exc.value.error == "GET_PORT_NOT_BOUND"


def test_tcp_relay_port_and_udp_off():
    with Tox(loopback_options(udp=False, tcp_port=0)) as t:
        with pytest.raises(GetPortError):
            t.udp_port


def test_port_in_use_names_the_error(tox):
    port = tox.udp_port
    with pytest.raises(ToxNewError) as exc:
        Tox(loopback_options(start_port=port, end_port=port))
    assert exc.value.error == "NEW_PORT_ALLOC"


def test_bootstrap_bad_host_names_the_error(tox):
    with pytest.raises(BootstrapError) as exc:
        tox.bootstrap("no such host.invalid", 33445, bytes(32))
    assert exc.value.error == "BOOTSTRAP_BAD_HOST"
    with pytest.raises(ValueError):
        tox.bootstrap("127.0.0.1", 33445, "not hex")


def test_friend_add_errors_are_named(tox, other):
    with pytest.raises(FriendAddError) as exc:
        tox.friend_add(tox.address, b"me")
    assert exc.value.error == "FRIEND_ADD_OWN_KEY"

    bad = bytearray(other.address)
    bad[-1] ^= 0xFF
    with pytest.raises(FriendAddError) as exc:
        tox.friend_add(bytes(bad), b"hi")
    assert exc.value.error == "FRIEND_ADD_BAD_CHECKSUM"

    with pytest.raises(FriendAddError) as exc:
        tox.friend_add(other.address, b"")
    assert exc.value.error == "FRIEND_ADD_NO_MESSAGE"

    with pytest.raises(FriendAddError) as exc:
        tox.friend_add(other.address, b"x" * 1017)
    assert exc.value.error == "FRIEND_ADD_TOO_LONG"

    friend = tox.friend_add(other.address_hex, "hi")  # hex and str work too
    with pytest.raises(FriendAddError) as exc:
        tox.friend_add(other.address, b"again")
    assert exc.value.error == "FRIEND_ADD_ALREADY_SENT"
    assert "tox_friend_add: FRIEND_ADD_ALREADY_SENT" in str(exc.value)

    other.nospam = other.nospam ^ 1
    with pytest.raises(FriendAddError) as exc:
        tox.friend_add(other.address, b"new nospam")
    assert exc.value.error == "FRIEND_ADD_SET_NEW_NOSPAM"
    assert tox.friend_list() == [friend]


def test_friend_table(tox, other):
    assert tox.friend_list() == []
    n = tox.friend_add_norequest(other.public_key)
    assert tox.friend_list() == [n]
    assert tox.friend_exists(n)
    assert tox.friend_by_public_key(other.public_key) == n
    assert tox.friend_public_key(n) == other.public_key
    assert tox.friend_connection_status(n) is Connection.NONE
    assert tox.friend_last_online(n) is None
    tox.friend_delete(n)
    assert tox.friend_list() == [] and not tox.friend_exists(n)
    with pytest.raises(FriendNotFoundError) as exc:
        tox.friend_by_public_key(other.public_key)
    assert exc.value.error == "FRIEND_BY_PUBLIC_KEY_NOT_FOUND"
    with pytest.raises(FriendDeleteError) as exc:
        tox.friend_delete(n)
    assert exc.value.error == "FRIEND_DELETE_FRIEND_NOT_FOUND"
    with pytest.raises(FriendNotFoundError):
        tox.friend_public_key(n)


@pytest.mark.parametrize(
    "packet, error",
    [
        (b"", "FRIEND_CUSTOM_PACKET_EMPTY"),
        (bytes([159]) + b"x", "FRIEND_CUSTOM_PACKET_INVALID"),
        (bytes([192]) + b"x", "FRIEND_CUSTOM_PACKET_INVALID"),
        (bytes([69]) + b"x", "FRIEND_CUSTOM_PACKET_INVALID"),  # lossless, but toxav's
        (bytes([160]) + bytes(1373), "FRIEND_CUSTOM_PACKET_TOO_LONG"),
        (bytes([160]) + bytes(1372), "FRIEND_CUSTOM_PACKET_FRIEND_NOT_CONNECTED"),
        (bytes([191]), "FRIEND_CUSTOM_PACKET_FRIEND_NOT_CONNECTED"),
    ],
)
def test_lossless_packet_validation(tox, other, packet, error):
    n = tox.friend_add_norequest(other.public_key)
    with pytest.raises(CustomPacketError) as exc:
        tox.send_lossless_packet(n, packet)
    assert exc.value.error == error
    with pytest.raises(CustomPacketError) as exc:
        tox.send_lossless_packet(n + 1, bytes([160]))
    assert exc.value.error == "FRIEND_CUSTOM_PACKET_FRIEND_NOT_FOUND"


@pytest.mark.parametrize(
    "message, error",
    [
        (b"", "FRIEND_SEND_MESSAGE_EMPTY"),
        (b"x" * 1373, "FRIEND_SEND_MESSAGE_TOO_LONG"),
        (b"x" * 1372, "FRIEND_SEND_MESSAGE_FRIEND_NOT_CONNECTED"),
    ],
)
def test_message_validation(tox, other, message, error):
    n = tox.friend_add_norequest(other.public_key)
    with pytest.raises(SendMessageError) as exc:
        tox.send_message(n, message)
    assert exc.value.error == error


def test_profile_roundtrip_keeps_id_and_is_private(tmp_path, tox, other):
    tox.friend_add_norequest(other.public_key)
    path = tmp_path / "sub" / "profile.tox"
    save_profile(path, tox.savedata())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["profile.tox"]  # no temporary left
    with Tox(loopback_options(savedata=load_profile(path))) as again:
        assert again.address == tox.address
        assert again.friend_public_key(again.friend_list()[0]) == other.public_key
    assert load_profile(tmp_path / "missing.tox") is None


def test_encrypted_profile(tmp_path, tox):
    path = tmp_path / "profile.tox"
    save_profile(path, tox.savedata(), passphrase="correct horse")
    raw = path.read_bytes()
    assert raw.startswith(b"toxEsave") and tox.public_key not in raw
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with Tox(loopback_options(savedata=load_profile(path, "correct horse"))) as again:
        assert again.address == tox.address
    with pytest.raises(DecryptionError) as exc:
        load_profile(path, "wrong")
    assert exc.value.error == "DECRYPTION_FAILED"
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert exc.value.error == "PROFILE_ENCRYPTED"
    with pytest.raises(ToxNewError) as exc:
        Tox(loopback_options(savedata=raw))
    assert exc.value.error == "NEW_LOAD_ENCRYPTED"


def test_garbage_savedata_names_the_error():
    with pytest.raises(ToxNewError) as exc:
        Tox(loopback_options(savedata=b"not a tox profile at all"))
    assert exc.value.error == "NEW_LOAD_BAD_FORMAT"


def test_use_after_close_fails_clearly():
    tox = Tox(loopback_options())
    tox.close()
    tox.close()  # idempotent
    assert tox.closed
    for call in (
        tox.iterate,
        tox.iteration_interval,
        tox.savedata,
        lambda: tox.address,
        lambda: tox.friend_add_norequest(bytes(32)),
        lambda: tox.send_lossless_packet(0, bytes([160])),
        lambda: tox.bootstrap("127.0.0.1", 1, bytes(32)),
    ):
        with pytest.raises(ToxClosedError):
            call()


def test_private_network_options_refuse_lan_discovery_and_ipv6():
    from toxbridge.errors import ConfigError

    with pytest.raises(ConfigError):
        loopback_options(local_discovery=True)
    with pytest.raises(ConfigError):
        loopback_options(ipv6=True)
