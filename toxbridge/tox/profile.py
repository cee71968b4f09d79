"""Profiles on disk: toxcore savedata, optionally encrypted with toxencryptsave.

Files are written atomically (temporary file, fsync, rename) with mode 0600: a
crash never leaves half a profile, and nobody else can read our secret key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import errors as E
from ._lib import PASS_ENCRYPTION_EXTRA_LENGTH, ensure, ffi, load

__all__ = ["encrypt", "decrypt", "is_encrypted", "save_profile", "load_profile", "ProfileError"]

MAGIC = b"toxEsave"  # toxencryptsave's header


class ProfileError(E.ToxError):
    """The profile file could not be used."""


def _passphrase(passphrase: str | bytes) -> bytes:
    data = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise ValueError("the passphrase is empty")
    return data


def is_encrypted(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def encrypt(data: bytes, passphrase: str | bytes) -> bytes:
    """Encrypt savedata with a passphrase (toxencryptsave: scrypt + secretbox)."""
    lib = load()
    pw = _passphrase(passphrase)
    out = ffi.new("uint8_t[]", len(data) + PASS_ENCRYPTION_EXTRA_LENGTH)
    err = ffi.new("Tox_Err_Encryption *")
    lib.tox_pass_encrypt(data, len(data), pw, len(pw), out, err)
    ensure(err, E.EncryptionError, "tox_pass_encrypt")
    return ffi.buffer(out)[:]


def decrypt(data: bytes, passphrase: str | bytes) -> bytes:
    """Decrypt savedata. Raises DecryptionError ``DECRYPTION_FAILED`` on a wrong passphrase."""
    lib = load()
    pw = _passphrase(passphrase)
    if len(data) <= PASS_ENCRYPTION_EXTRA_LENGTH:
        raise E.DecryptionError("tox_pass_decrypt", "DECRYPTION_INVALID_LENGTH")
    out = ffi.new("uint8_t[]", len(data) - PASS_ENCRYPTION_EXTRA_LENGTH)
    err = ffi.new("Tox_Err_Decryption *")
    lib.tox_pass_decrypt(data, len(data), pw, len(pw), out, err)
    ensure(err, E.DecryptionError, "tox_pass_decrypt")
    return ffi.buffer(out)[:]


def save_profile(path: str | os.PathLike, savedata: bytes, passphrase: str | bytes | None = None) -> None:
    """Write savedata to ``path`` atomically, mode 0600, encrypted if a passphrase is given."""
    path = Path(path)
    data = encrypt(savedata, passphrase) if passphrase else savedata
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_profile(path: str | os.PathLike, passphrase: str | bytes | None = None) -> bytes | None:
    """Read savedata from ``path``; None if the file does not exist.

    Raises ProfileError when the profile is encrypted and no passphrase was given,
    and DecryptionError (``DECRYPTION_FAILED``) when the passphrase is wrong.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    if is_encrypted(data):
        if not passphrase:
            raise ProfileError("load_profile", "PROFILE_ENCRYPTED")
        return decrypt(data, passphrase)
    return data
