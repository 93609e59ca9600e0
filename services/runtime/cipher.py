"""Encryption at rest: the event-store cipher, its key, and reading with old keys after rotation.

Every stored event is compressed and then encrypted whole (AES-256-GCM, eventsourcing's
``eventsourcing.cryptography:AESCipher`` format: nonce + tag + ciphertext). The key comes from

1. ``HOMECARE_CIPHER_KEY`` (base64, as ``AESCipher.create_key(32)`` makes), else
2. the file named by ``HOMECARE_CIPHER_KEY_FILE`` (how a Kubernetes secret is mounted), else
3. ``<data_dir>/keys/cipher.key``, generated once (mode 0600) and reused: local runs encrypt too.

Rotation: put the new key in place and the previous one(s) in ``HOMECARE_CIPHER_OLD_KEYS``
(comma-separated base64). New events are written with the new key; old events still read, because
:class:`RotatingAESCipher` tries the current key first and then each old key.
"""

from __future__ import annotations

import logging
import os
import time
from base64 import b64decode
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

from services.runtime.settings import SharedSettings

log = logging.getLogger(__name__)

CIPHER_TOPIC = "services.runtime.cipher:RotatingAESCipher"
KEY_FILE_NAME = "cipher.key"
NONCE, TAG = 12, 16


def new_key() -> str:
    """A fresh AES-256 key, base64 (what HOMECARE_CIPHER_KEY expects)."""
    return AESCipher.create_key(32)


def decode_key(text: str) -> bytes:
    key = b64decode(text.strip().encode("ascii"), validate=True)
    AESCipher.check_key_size(len(key))
    return key


def seal(key: bytes | AESGCM, plaintext: bytes, associated: bytes | None = None) -> bytes:
    """AES-GCM encrypt: nonce + tag + ciphertext (eventsourcing's layout). The key, or an
    AESGCM made from it (expanding a key costs as much as sealing a small event)."""
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    nonce = os.urandom(NONCE)
    out = aead.encrypt(nonce, plaintext, associated)
    return nonce + out[-TAG:] + out[:-TAG]


def unseal(key: bytes | AESGCM, sealed: bytes, associated: bytes | None = None) -> bytes:
    """Inverse of :func:`seal`; raises ``InvalidTag`` for a wrong key or damaged data."""
    if len(sealed) < NONCE + TAG:
        raise ValueError("damaged ciphertext: too short")
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    nonce, tag, body = sealed[:NONCE], sealed[NONCE:NONCE + TAG], sealed[NONCE + TAG:]
    return aead.decrypt(nonce, body + tag, associated)


class RotatingAESCipher(AESCipher):
    """eventsourcing's AES-GCM cipher that also reads what older keys wrote.

    ``CIPHER_KEY`` encrypts; ``CIPHER_OLD_KEYS`` (comma-separated base64) are tried, in order,
    when the current key does not open a ciphertext.
    """

    CIPHER_OLD_KEYS = "CIPHER_OLD_KEYS"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        old = environment.get(self.CIPHER_OLD_KEYS) or ""
        self.old_keys = [decode_key(k) for k in old.split(",") if k.strip()]
        # The store's keys, expanded once (per-person keys are not kept: see personal.py).
        self._aeads = [AESGCM(k) for k in (self.key, *self.old_keys)]

    def encrypt(self, plaintext: bytes) -> bytes:
        return seal(self._aeads[0], plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        for key in self._aeads:
            try:
                return unseal(key, ciphertext)
            except InvalidTag:
                continue
        raise ValueError("Cipher text is damaged or was written with a key not configured "
                         "(neither CIPHER_KEY nor any of CIPHER_OLD_KEYS opens it)")


def cipher_key(settings: SharedSettings) -> str:
    """The event-store key: from the environment, a mounted secret file, or generated locally."""
    if settings.cipher_key:
        decode_key(settings.cipher_key)
        return settings.cipher_key.strip()
    if settings.cipher_key_file:
        text = Path(settings.cipher_key_file).read_text(encoding="ascii").strip()
        decode_key(text)
        return text
    path = settings.data_dir / "keys" / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = new_key()
        # O_EXCL: two services starting together create it once; the loser reads the winner's.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key + "\n")
            log.warning("no HOMECARE_CIPHER_KEY configured: generated %s (keep it; events "
                        "written with it are unreadable without it)", path)
    text = path.read_text(encoding="ascii").strip()
    if not text:  # the creator has not written it yet
        time.sleep(0.05)
        text = path.read_text(encoding="ascii").strip()
    decode_key(text)
    return text


def cipher_env(settings: SharedSettings) -> dict[str, str]:
    """eventsourcing settings that compress and encrypt every stored event."""
    env = {
        "CIPHER_TOPIC": CIPHER_TOPIC,
        "CIPHER_KEY": cipher_key(settings),
        "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    }
    if settings.cipher_old_keys:
        for k in settings.cipher_old_keys.split(","):
            if k.strip():
                decode_key(k)
        env["CIPHER_OLD_KEYS"] = settings.cipher_old_keys
    return env
