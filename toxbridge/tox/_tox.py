"""The Pythonic ``Tox`` class over libtoxcore.

One thread must own a ``Tox`` (toxcore is not thread-safe). Callbacks run inside
``iterate()``; they only record, and an exception raised in one is re-raised by
``iterate()`` once the C call has returned (never through C).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from . import errors as E
from ._lib import (
    ADDRESS_SIZE,
    MAX_CUSTOM_PACKET_SIZE,
    MAX_FRIEND_REQUEST_LENGTH,
    MAX_MESSAGE_LENGTH,
    PUBLIC_KEY_SIZE,
    ensure,
    ffi,
    load,
)

__all__ = [
    "Connection",
    "MessageType",
    "ProxyType",
    "ToxOptions",
    "Tox",
    "LOSSLESS_PACKET_IDS",
    "LOSSY_PACKET_IDS",
    "parse_key",
]

LOSSLESS_PACKET_IDS = range(160, 192)
LOSSY_PACKET_IDS = range(200, 255)


class Connection(enum.IntEnum):
    NONE = 0
    TCP = 1
    UDP = 2


class MessageType(enum.IntEnum):
    NORMAL = 0
    ACTION = 1


class ProxyType(enum.IntEnum):
    NONE = 0
    HTTP = 1
    SOCKS5 = 2


@dataclass(frozen=True)
class ToxOptions:
    """Options for a new Tox instance. The defaults are toxcore's own.

    Anything that runs a test or demo network must turn ``local_discovery`` and
    ``ipv6`` off (``toxbridge.network.loopback_options`` does).
    """

    udp: bool = True
    ipv6: bool = True
    local_discovery: bool = True
    hole_punching: bool = True
    start_port: int = 0  # 0/0: toxcore's default range 33445-33545
    end_port: int = 0
    tcp_port: int = 0  # > 0: also act as a TCP relay on this port
    proxy_type: ProxyType = ProxyType.NONE
    proxy_host: str = ""
    proxy_port: int = 0
    savedata: bytes | None = None  # an unencrypted Tox save (see toxbridge.tox.profile)


def parse_key(value: bytes | str, size: int, what: str) -> bytes:
    """Accept a key/address as raw bytes or hex; raise ValueError naming ``what``."""
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.strip())
        except ValueError:
            raise ValueError(f"{what} is not hex: {value!r}") from None
    if len(value) != size:
        raise ValueError(f"{what} must be {size} bytes ({2 * size} hex digits), got {len(value)}")
    return bytes(value)


def parse_address(value: bytes | str) -> bytes:
    """A Tox ID (public key, nospam, checksum) as bytes or hex, its checksum checked as
    toxcore does (the XOR of the first 36 bytes taken two at a time), so a mistyped ID is
    a clear error before anything goes on the network. Raises ValueError."""
    address = parse_key(value, ADDRESS_SIZE, "Tox ID")
    checksum = [0, 0]
    for i, byte in enumerate(address[:-2]):
        checksum[i % 2] ^= byte
    if bytes(checksum) != address[-2:]:
        raise ValueError("the Tox ID's checksum does not match (a mistyped or cut ID?)")
    return address


class Tox:
    """A toxcore instance.

    Handlers are plain attributes, called from inside ``iterate()``:

    - ``on_self_connection_status(status: Connection)``
    - ``on_friend_request(public_key: bytes, message: bytes)``
    - ``on_friend_connection_status(friend: int, status: Connection)``
    - ``on_friend_lossless_packet(friend: int, data: bytes)`` (data includes the id byte)
    - ``on_friend_lossy_packet(friend: int, data: bytes)`` (data includes the id byte)
    - ``on_friend_message(friend: int, type: MessageType, message: bytes)``

    Raises ``ToxNewError`` (e.g. ``NEW_PORT_ALLOC``, ``NEW_LOAD_ENCRYPTED``) when toxcore
    cannot start, and ``ToxClosedError`` for any use after ``close()``.
    """

    def __init__(self, options: ToxOptions | None = None) -> None:
        options = options or ToxOptions()
        self._lib = lib = load()
        self._ptr = ffi.NULL
        self._pending: BaseException | None = None
        self.on_self_connection_status: Callable[[Connection], None] | None = None
        self.on_friend_request: Callable[[bytes, bytes], None] | None = None
        self.on_friend_connection_status: Callable[[int, Connection], None] | None = None
        self.on_friend_lossless_packet: Callable[[int, bytes], None] | None = None
        self.on_friend_lossy_packet: Callable[[int, bytes], None] | None = None
        self.on_friend_message: Callable[[int, MessageType, bytes], None] | None = None

        err = ffi.new("Tox_Err_Options_New *")
        opts = lib.tox_options_new(err)
        ensure(err, E.OptionsError, "tox_options_new")
        try:
            lib.tox_options_set_udp_enabled(opts, options.udp)
            lib.tox_options_set_ipv6_enabled(opts, options.ipv6)
            lib.tox_options_set_local_discovery_enabled(opts, options.local_discovery)
            lib.tox_options_set_hole_punching_enabled(opts, options.hole_punching)
            lib.tox_options_set_start_port(opts, options.start_port)
            lib.tox_options_set_end_port(opts, options.end_port)
            lib.tox_options_set_tcp_port(opts, options.tcp_port)
            lib.tox_options_set_proxy_type(opts, int(options.proxy_type))
            host = ffi.new("char[]", options.proxy_host.encode())  # copied by tox_new
            lib.tox_options_set_proxy_host(opts, host)
            lib.tox_options_set_proxy_port(opts, options.proxy_port)
            if options.savedata:
                saved = ffi.from_buffer(options.savedata)
                lib.tox_options_set_savedata_type(opts, lib.TOX_SAVEDATA_TYPE_TOX_SAVE)
                lib.tox_options_set_savedata_data(opts, saved, len(options.savedata))
            err = ffi.new("Tox_Err_New *")
            ptr = lib.tox_new(opts, err)
            ensure(err, E.ToxNewError, "tox_new")
        finally:
            lib.tox_options_free(opts)
        self._ptr = ptr
        # Preallocated out-parameters for the hot paths (single-threaded by contract).
        self._packet_err = ffi.new("Tox_Err_Friend_Custom_Packet *")
        self._callbacks = self._install_callbacks()
        self.options = options

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Stop toxcore and free it. Idempotent."""
        if self._ptr != ffi.NULL:
            ptr, self._ptr = self._ptr, ffi.NULL
            self._lib.tox_kill(ptr)

    @property
    def closed(self) -> bool:
        return self._ptr == ffi.NULL

    def __enter__(self) -> Tox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _p(self):
        ptr = self._ptr
        if ptr == ffi.NULL:
            raise E.ToxClosedError("this Tox instance is closed")
        return ptr

    def iterate(self) -> None:
        """Run toxcore's event loop once; callbacks run here.

        Re-raises the first exception a handler raised during this call.
        """
        self._lib.tox_iterate(self._p(), ffi.NULL)
        if self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc

    def iteration_interval(self) -> float:
        """Seconds toxcore would like to wait before the next ``iterate()``."""
        return self._lib.tox_iteration_interval(self._p()) / 1000.0

    def savedata(self) -> bytes:
        """The profile (keys, nospam, friends) as toxcore serialises it, unencrypted."""
        ptr = self._p()
        size = self._lib.tox_get_savedata_size(ptr)
        buf = ffi.new("uint8_t[]", size)
        self._lib.tox_get_savedata(ptr, buf)
        return ffi.buffer(buf, size)[:]

    # -- identity -------------------------------------------------------------------

    @property
    def address(self) -> bytes:
        """Our Tox ID: public key, nospam and checksum (38 bytes)."""
        buf = ffi.new("uint8_t[]", ADDRESS_SIZE)
        self._lib.tox_self_get_address(self._p(), buf)
        return ffi.buffer(buf)[:]

    @property
    def address_hex(self) -> str:
        return self.address.hex().upper()

    @property
    def public_key(self) -> bytes:
        buf = ffi.new("uint8_t[]", PUBLIC_KEY_SIZE)
        self._lib.tox_self_get_public_key(self._p(), buf)
        return ffi.buffer(buf)[:]

    @property
    def dht_id(self) -> bytes:
        """The DHT public key others use to bootstrap from us."""
        buf = ffi.new("uint8_t[]", PUBLIC_KEY_SIZE)
        self._lib.tox_self_get_dht_id(self._p(), buf)
        return ffi.buffer(buf)[:]

    @property
    def nospam(self) -> int:
        return self._lib.tox_self_get_nospam(self._p())

    @nospam.setter
    def nospam(self, value: int) -> None:
        if not 0 <= value < 2**32:
            raise ValueError("nospam is a 32-bit unsigned integer")
        self._lib.tox_self_set_nospam(self._p(), value)

    @property
    def udp_port(self) -> int:
        """Raises GetPortError (``GET_PORT_NOT_BOUND``) when UDP is off."""
        err = ffi.new("Tox_Err_Get_Port *")
        port = self._lib.tox_self_get_udp_port(self._p(), err)
        ensure(err, E.GetPortError, "tox_self_get_udp_port")
        return port

    @property
    def tcp_port(self) -> int:
        """Raises GetPortError (``GET_PORT_NOT_BOUND``) unless we are a TCP relay."""
        err = ffi.new("Tox_Err_Get_Port *")
        port = self._lib.tox_self_get_tcp_port(self._p(), err)
        ensure(err, E.GetPortError, "tox_self_get_tcp_port")
        return port

    def set_name(self, name: str) -> None:
        data = name.encode()
        err = ffi.new("Tox_Err_Set_Info *")
        self._lib.tox_self_set_name(self._p(), data, len(data), err)
        ensure(err, E.SetInfoError, "tox_self_set_name")

    # -- network --------------------------------------------------------------------

    def bootstrap(self, host: str, port: int, public_key: bytes | str) -> None:
        """Add a DHT node to bootstrap from (its DHT id as bytes or hex)."""
        key = parse_key(public_key, PUBLIC_KEY_SIZE, "bootstrap public key")
        err = ffi.new("Tox_Err_Bootstrap *")
        self._lib.tox_bootstrap(self._p(), host.encode(), port, key, err)
        ensure(err, E.BootstrapError, "tox_bootstrap")

    def add_tcp_relay(self, host: str, port: int, public_key: bytes | str) -> None:
        key = parse_key(public_key, PUBLIC_KEY_SIZE, "TCP relay public key")
        err = ffi.new("Tox_Err_Bootstrap *")
        self._lib.tox_add_tcp_relay(self._p(), host.encode(), port, key, err)
        ensure(err, E.BootstrapError, "tox_add_tcp_relay")

    @property
    def connection_status(self) -> Connection:
        """Our own connection to the Tox network."""
        return Connection(self._lib.tox_self_get_connection_status(self._p()))

    # -- friends --------------------------------------------------------------------

    def friend_add(self, address: bytes | str, message: bytes | str) -> int:
        """Send a friend request; return the new friend number.

        Raises FriendAddError: ``FRIEND_ADD_OWN_KEY``, ``FRIEND_ADD_ALREADY_SENT``,
        ``FRIEND_ADD_BAD_CHECKSUM``, ``FRIEND_ADD_SET_NEW_NOSPAM``, ``FRIEND_ADD_NO_MESSAGE``,
        ``FRIEND_ADD_TOO_LONG`` (over 1016 bytes).
        """
        addr = parse_key(address, ADDRESS_SIZE, "Tox ID")
        msg = message.encode() if isinstance(message, str) else bytes(message)
        if len(msg) > MAX_FRIEND_REQUEST_LENGTH:
            raise E.FriendAddError("tox_friend_add", "FRIEND_ADD_TOO_LONG")
        err = ffi.new("Tox_Err_Friend_Add *")
        friend = self._lib.tox_friend_add(self._p(), addr, msg, len(msg), err)
        ensure(err, E.FriendAddError, "tox_friend_add")
        return friend

    def friend_add_norequest(self, public_key: bytes | str) -> int:
        """Add a friend without a request (accepting theirs); return the friend number."""
        key = parse_key(public_key, PUBLIC_KEY_SIZE, "friend public key")
        err = ffi.new("Tox_Err_Friend_Add *")
        friend = self._lib.tox_friend_add_norequest(self._p(), key, err)
        ensure(err, E.FriendAddError, "tox_friend_add_norequest")
        return friend

    def friend_delete(self, friend: int) -> None:
        err = ffi.new("Tox_Err_Friend_Delete *")
        self._lib.tox_friend_delete(self._p(), friend, err)
        ensure(err, E.FriendDeleteError, "tox_friend_delete")

    def friend_by_public_key(self, public_key: bytes | str) -> int:
        """Raises FriendNotFoundError (``FRIEND_BY_PUBLIC_KEY_NOT_FOUND``)."""
        key = parse_key(public_key, PUBLIC_KEY_SIZE, "friend public key")
        err = ffi.new("Tox_Err_Friend_By_Public_Key *")
        friend = self._lib.tox_friend_by_public_key(self._p(), key, err)
        ensure(err, E.FriendNotFoundError, "tox_friend_by_public_key")
        return friend

    def friend_exists(self, friend: int) -> bool:
        return bool(self._lib.tox_friend_exists(self._p(), friend))

    def friend_list(self) -> list[int]:
        ptr = self._p()
        size = self._lib.tox_self_get_friend_list_size(ptr)
        buf = ffi.new("uint32_t[]", size)
        self._lib.tox_self_get_friend_list(ptr, buf)
        return list(buf)

    def friend_public_key(self, friend: int) -> bytes:
        buf = ffi.new("uint8_t[]", PUBLIC_KEY_SIZE)
        err = ffi.new("Tox_Err_Friend_Get_Public_Key *")
        self._lib.tox_friend_get_public_key(self._p(), friend, buf, err)
        ensure(err, E.FriendNotFoundError, "tox_friend_get_public_key")
        return ffi.buffer(buf)[:]

    def friend_connection_status(self, friend: int) -> Connection:
        err = ffi.new("Tox_Err_Friend_Query *")
        status = self._lib.tox_friend_get_connection_status(self._p(), friend, err)
        ensure(err, E.FriendQueryError, "tox_friend_get_connection_status")
        return Connection(status)

    def friend_last_online(self, friend: int) -> int | None:
        """Unix time the friend was last seen online, or None if never."""
        err = ffi.new("Tox_Err_Friend_Get_Last_Online *")
        when = self._lib.tox_friend_get_last_online(self._p(), friend, err)
        ensure(err, E.FriendNotFoundError, "tox_friend_get_last_online")
        return when or None

    # -- data -----------------------------------------------------------------------

    def send_message(self, friend: int, message: bytes | str,
                     type: MessageType = MessageType.NORMAL) -> int:
        """Send a chat message (1..1372 bytes); return its message id.

        Raises SendMessageError: ``FRIEND_SEND_MESSAGE_TOO_LONG``, ``..._EMPTY``,
        ``..._FRIEND_NOT_CONNECTED``, ``..._SENDQ``, ``..._FRIEND_NOT_FOUND``.
        """
        data = message.encode() if isinstance(message, str) else bytes(message)
        if len(data) > MAX_MESSAGE_LENGTH:
            raise E.SendMessageError("tox_friend_send_message", "FRIEND_SEND_MESSAGE_TOO_LONG")
        err = ffi.new("Tox_Err_Friend_Send_Message *")
        msg_id = self._lib.tox_friend_send_message(self._p(), friend, int(type), data, len(data), err)
        ensure(err, E.SendMessageError, "tox_friend_send_message")
        return msg_id

    def send_lossless_packet(self, friend: int, data: bytes) -> None:
        """Send a lossless custom packet; ``data[0]`` is its id (160-191), 1373 bytes max.

        Raises CustomPacketError: ``FRIEND_CUSTOM_PACKET_INVALID`` (id out of range),
        ``..._EMPTY``, ``..._TOO_LONG``, ``..._FRIEND_NOT_CONNECTED``, ``..._SENDQ``.
        """
        if not self.try_send_lossless_packet(friend, data):
            raise E.CustomPacketError("tox_friend_send_lossless_packet",
                                      "FRIEND_CUSTOM_PACKET_SENDQ", 7)

    def try_send_lossless_packet(self, friend: int, data: bytes) -> bool:
        """Like ``send_lossless_packet``, but return False when toxcore says SENDQ
        (its rate budget is used up for now: iterate, then retry). The hot path."""
        n = len(data)
        if n == 0:
            raise E.CustomPacketError("tox_friend_send_lossless_packet", "FRIEND_CUSTOM_PACKET_EMPTY", 5)
        if n > MAX_CUSTOM_PACKET_SIZE:
            raise E.CustomPacketError("tox_friend_send_lossless_packet", "FRIEND_CUSTOM_PACKET_TOO_LONG", 6)
        if data[0] not in LOSSLESS_PACKET_IDS:
            raise E.CustomPacketError("tox_friend_send_lossless_packet", "FRIEND_CUSTOM_PACKET_INVALID", 4)
        err = self._packet_err
        if self._lib.tox_friend_send_lossless_packet(self._p(), friend, data, n, err):
            return True
        if err[0] == self._lib.TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ:
            return False
        ensure(err, E.CustomPacketError, "tox_friend_send_lossless_packet")
        return True  # unreachable: ensure raised

    def try_send_lossy_packet(self, friend: int, data: bytes) -> bool:
        """Send a lossy custom packet (``data[0]``: its id, 200-254; 1373 bytes max), at
        once and outside toxcore's send queue and rate control. False when toxcore says
        SENDQ (here: it could not send the packet, e.g. no UDP path yet); the packet is
        then gone, as any lossy packet may be. Raises CustomPacketError otherwise."""
        n = len(data)
        if n == 0:
            raise E.CustomPacketError("tox_friend_send_lossy_packet", "FRIEND_CUSTOM_PACKET_EMPTY", 5)
        if n > MAX_CUSTOM_PACKET_SIZE:
            raise E.CustomPacketError("tox_friend_send_lossy_packet", "FRIEND_CUSTOM_PACKET_TOO_LONG", 6)
        if data[0] not in LOSSY_PACKET_IDS:
            raise E.CustomPacketError("tox_friend_send_lossy_packet", "FRIEND_CUSTOM_PACKET_INVALID", 4)
        err = self._packet_err
        if self._lib.tox_friend_send_lossy_packet(self._p(), friend, data, n, err):
            return True
        if err[0] == self._lib.TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ:
            return False
        ensure(err, E.CustomPacketError, "tox_friend_send_lossy_packet")
        return True  # unreachable: ensure raised

    # -- callbacks ------------------------------------------------------------------

    def _record(self, exc: BaseException) -> None:
        if self._pending is None:
            self._pending = exc

    def _install_callbacks(self) -> list:
        lib, ptr, buffer = self._lib, self._ptr, ffi.buffer

        def self_connection(_tox, status, _ud):
            try:
                if self.on_self_connection_status:
                    self.on_self_connection_status(Connection(status))
            except BaseException as exc:
                self._record(exc)

        def friend_request(_tox, key, message, length, _ud):
            try:
                if self.on_friend_request:
                    self.on_friend_request(buffer(key, PUBLIC_KEY_SIZE)[:], buffer(message, length)[:])
            except BaseException as exc:
                self._record(exc)

        def friend_connection(_tox, friend, status, _ud):
            try:
                if self.on_friend_connection_status:
                    self.on_friend_connection_status(friend, Connection(status))
            except BaseException as exc:
                self._record(exc)

        def friend_message(_tox, friend, type_, message, length, _ud):
            try:
                if self.on_friend_message:
                    self.on_friend_message(friend, MessageType(type_), buffer(message, length)[:])
            except BaseException as exc:
                self._record(exc)

        def friend_lossless(_tox, friend, data, length, _ud):
            try:
                handler = self.on_friend_lossless_packet
                if handler:
                    handler(friend, buffer(data, length)[:])
            except BaseException as exc:
                self._record(exc)

        def friend_lossy(_tox, friend, data, length, _ud):
            try:
                handler = self.on_friend_lossy_packet
                if handler:
                    handler(friend, buffer(data, length)[:])
            except BaseException as exc:
                self._record(exc)

        # The cdata callbacks must live as long as the Tox: keep them on the instance.
        callbacks = [
            (lib.tox_callback_self_connection_status,
             ffi.callback("tox_self_connection_status_cb", self_connection)),
            (lib.tox_callback_friend_request, ffi.callback("tox_friend_request_cb", friend_request)),
            (lib.tox_callback_friend_connection_status,
             ffi.callback("tox_friend_connection_status_cb", friend_connection)),
            (lib.tox_callback_friend_message, ffi.callback("tox_friend_message_cb", friend_message)),
            (lib.tox_callback_friend_lossless_packet,
             ffi.callback("tox_friend_lossless_packet_cb", friend_lossless)),
            (lib.tox_callback_friend_lossy_packet,
             ffi.callback("tox_friend_lossy_packet_cb", friend_lossy)),
        ]
        for register, cb in callbacks:
            register(ptr, cb)
        return [cb for _, cb in callbacks]
