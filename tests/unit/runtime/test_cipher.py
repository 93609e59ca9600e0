"""The event-store cipher: where its key comes from, and reading after a key rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from eventsourcing.utils import Environment

from services.runtime.cipher import RotatingAESCipher, cipher_env, cipher_key, new_key
from services.runtime.eventstore import event_store_env
from services.runtime.settings import SharedSettings


def cipher(key: str, old: str = "") -> RotatingAESCipher:
    return RotatingAESCipher(Environment(env={"CIPHER_KEY": key, "CIPHER_OLD_KEYS": old}))


def test_after_rotation_old_events_still_read_and_new_ones_use_the_new_key():
    """What the old key wrote opens once the old key is listed in CIPHER_OLD_KEYS; what the new
    key writes does not open with the old key alone."""
    old, new = new_key(), new_key()
    before = cipher(old).encrypt(b"written before the rotation")
    rotated = cipher(new, old=f" {new_key()}, {old} ")
    assert rotated.decrypt(before) == b"written before the rotation"
    after = rotated.encrypt(b"written after")
    assert rotated.decrypt(after) == b"written after"
    with pytest.raises(ValueError, match="key not configured"):
        cipher(old).decrypt(after)
    with pytest.raises(ValueError, match="key not configured"):
        cipher(new).decrypt(before)  # the old key was forgotten: refused, not garbage


def test_the_key_from_the_environment_wins_then_the_secret_file(tmp_path: Path):
    """HOMECARE_CIPHER_KEY first, then the file HOMECARE_CIPHER_KEY_FILE (a mounted Secret);
    a malformed key is refused at start-up rather than at the first event."""
    env_key, file_key = new_key(), new_key()
    secret = tmp_path / "key"
    secret.write_text(file_key + "\n")
    assert cipher_key(SharedSettings(data_dir=tmp_path, cipher_key=env_key,
                                     cipher_key_file=secret)) == env_key
    assert cipher_key(SharedSettings(data_dir=tmp_path, cipher_key_file=secret)) == file_key
    with pytest.raises(ValueError):
        cipher_key(SharedSettings(data_dir=tmp_path, cipher_key="bm90IGEga2V5"))
    assert not (tmp_path / "keys").exists()  # nothing generated when a key is configured


def test_local_runs_generate_a_key_once_private_and_reuse_it(tmp_path: Path):
    """No key configured: one is made under data_dir/keys/cipher.key, mode 0600, and the next
    start (or the next service) reads the same key."""
    first = cipher_key(SharedSettings(data_dir=tmp_path))
    path = tmp_path / "keys" / "cipher.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cipher_key(SharedSettings(data_dir=tmp_path)) == first


def test_every_event_store_is_compressed_and_encrypted(tmp_path: Path):
    """event_store_env gives each service the rotating AES cipher, its key, old keys and zlib."""
    old = new_key()
    settings = SharedSettings(data_dir=tmp_path, cipher_old_keys=old)
    env = event_store_env("ledger", settings)
    assert env["LEDGER_CIPHER_TOPIC"] == "services.runtime.cipher:RotatingAESCipher"
    assert env["LEDGER_CIPHER_KEY"] == cipher_key(settings)
    assert env["LEDGER_CIPHER_OLD_KEYS"] == old
    assert env["LEDGER_COMPRESSOR_TOPIC"] == "eventsourcing.compressor:ZlibCompressor"
    assert set(cipher_env(settings)) == {k.removeprefix("LEDGER_") for k in env} & {
        "CIPHER_TOPIC", "CIPHER_KEY", "CIPHER_OLD_KEYS", "COMPRESSOR_TOPIC"}
