"""Codes and tokens at rest: authenticated encryption, keyed fingerprints, rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from app.kit.crypto import DecryptionFailed, SecretBox, secret_hint

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


class TestSecretBox:
    @given(st.text(min_size=1, max_size=300))
    def test_round_trip(self, clear: str) -> None:
        box = SecretBox([NEW])
        assert box.decrypt(box.encrypt(clear)) == clear

    def test_ciphertext_does_not_contain_the_secret(self) -> None:
        code = "#SBX+video-30d/Aa1="
        token = SecretBox([NEW]).encrypt(code)
        assert code.encode() not in token
        assert SecretBox([NEW]).encrypt(code) != token  # a fresh IV each time: equal codes do not look equal

    def test_tampered_ciphertext_is_refused(self) -> None:
        box = SecretBox([NEW])
        token = bytearray(box.encrypt("#code+/="))
        token[-5] ^= 1
        with pytest.raises(DecryptionFailed):
            box.decrypt(bytes(token))

    def test_rotation_new_key_encrypts_old_key_still_decrypts(self) -> None:
        written_before = SecretBox([OLD]).encrypt("#code")
        rotated = SecretBox([NEW, OLD])
        assert rotated.decrypt(written_before) == "#code"
        with pytest.raises(DecryptionFailed):
            SecretBox([OLD]).decrypt(rotated.encrypt("#code"))  # new rows use the new key

    def test_fingerprints_find_rows_written_before_a_rotation(self) -> None:
        before = SecretBox([OLD]).fingerprint("#code")
        rotated = SecretBox([NEW, OLD])
        assert before in rotated.fingerprints("#code")
        assert rotated.fingerprint("#code") != before

    def test_fingerprint_is_keyed(self) -> None:
        assert SecretBox([OLD]).fingerprint("#code") != SecretBox([NEW]).fingerprint("#code")
        assert SecretBox([OLD]).fingerprint("#code") == SecretBox([OLD]).fingerprint("#code")


class TestSecretHint:
    def test_shows_only_the_last_four_characters(self) -> None:
        assert secret_hint("#SBX+video-30d/Aa1=") == "…Aa1="

    def test_short_secrets_show_nothing(self) -> None:
        assert secret_hint("#short") == "…"
