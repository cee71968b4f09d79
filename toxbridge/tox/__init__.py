"""toxbridge's own toxcore binding (cffi over libtoxcore.so.2).

Only this package touches cffi (``_cdefs`` the curated header, ``_lib`` loading it, ``_tox``
the ``Tox`` class, ``errors`` toxcore's error enums as exceptions, ``profile`` save files and
toxencryptsave, ``sockets`` toxcore's UDP descriptor, found in /proc); the rest of
toxbridge sees ``Tox`` with Python types and exceptions that name toxcore's errors. It may import ``toxbridge.errors`` only: it is the bottom layer.
"""

from ._lib import ADDRESS_SIZE, MAX_CUSTOM_PACKET_SIZE, MAX_MESSAGE_LENGTH, PUBLIC_KEY_SIZE
from ._tox import LOSSLESS_PACKET_IDS, LOSSY_PACKET_IDS, Connection, MessageType, ProxyType, Tox, ToxOptions, parse_address, parse_key
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .profile import ProfileError, decrypt, encrypt, is_encrypted, load_profile, save_profile
from .sockets import UPKEEP_PACKET_KINDS, udp_socket_fd

__all__ = [
    "ADDRESS_SIZE",
    "MAX_CUSTOM_PACKET_SIZE",
    "MAX_MESSAGE_LENGTH",
    "PUBLIC_KEY_SIZE",
    "LOSSLESS_PACKET_IDS",
    "LOSSY_PACKET_IDS",
    "Connection",
    "MessageType",
    "ProxyType",
    "Tox",
    "ToxOptions",
    "parse_address",
    "parse_key",
    "ProfileError",
    "decrypt",
    "encrypt",
    "is_encrypted",
    "load_profile",
    "save_profile",
    "UPKEEP_PACKET_KINDS",
    "udp_socket_fd",
    *_errors_all,
]
