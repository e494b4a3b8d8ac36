"""Configuration is typed and fails fast: four settings start the service; placeholders are refused."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from app.kit.settings import Environment, Settings

GOOD_KEY = Fernet.generate_key().decode()
STRONG_API_KEY = "sa_" + "Zq8xV2mN4pL7rT1wY6bC3dF9gH5jK0" * 2


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": "postgresql+asyncpg://u:p@db.internal:5432/spark",
        "tiktok_api_base_url": "https://business-api.tiktok.com/open_api/",
        "bootstrap_api_key": STRONG_API_KEY,
        "encryption_keys": GOOD_KEY,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class TestSettings:
    def test_the_four_settings_are_enough(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db.internal:5432/spark")
        monkeypatch.setenv("TIKTOK_API_BASE_URL", "https://business-api.tiktok.com/open_api/")
        monkeypatch.setenv("BOOTSTRAP_API_KEY", STRONG_API_KEY)
        monkeypatch.setenv("ENCRYPTION_KEYS", f"{GOOD_KEY}, {Fernet.generate_key().decode()}")
        settings = Settings()  # type: ignore[call-arg]
        assert settings.environment is Environment.production
        assert len(settings.encryption_keys) == 2
        assert settings.max_video_duration_seconds == 600  # D9 default

    def test_libpq_urls_get_the_async_driver(self) -> None:
        assert _settings(database_url="postgresql://u@h/d").database_url == "postgresql+asyncpg://u@h/d"

    def test_other_databases_are_refused(self) -> None:
        with pytest.raises(ValidationError, match="postgresql"):
            _settings(database_url="mysql://u@h/d")

    def test_base_url_gets_its_trailing_slash(self) -> None:
        assert _settings(tiktok_api_base_url="https://x.test/open_api").tiktok_api_base_url.endswith("/open_api/")

    def test_base_url_must_be_http(self) -> None:
        with pytest.raises(ValidationError, match="http"):
            _settings(tiktok_api_base_url="business-api.tiktok.com/open_api/")

    @pytest.mark.parametrize("key", ["not-base64!!", "c2hvcnQ=", ""])
    def test_malformed_encryption_keys_are_refused(self, key: str) -> None:
        with pytest.raises(ValidationError):
            _settings(encryption_keys=key)

    @pytest.mark.parametrize("api_key", ["changeme", "short", "placeholder-" + "x" * 40])
    def test_placeholder_api_key_refused_outside_development(self, api_key: str) -> None:
        with pytest.raises(ValidationError, match="BOOTSTRAP_API_KEY"):
            _settings(bootstrap_api_key=api_key)
        assert _settings(bootstrap_api_key=api_key, environment="development").bootstrap_api_key

    def test_non_random_encryption_key_refused_outside_development(self) -> None:
        import base64

        zeros = base64.urlsafe_b64encode(b"\0" * 32).decode()
        with pytest.raises(ValidationError, match="ENCRYPTION_KEYS"):
            _settings(encryption_keys=zeros)
        assert _settings(encryption_keys=zeros, environment="development")

    def test_missing_required_settings_are_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("DATABASE_URL", "TIKTOK_API_BASE_URL", "ENCRYPTION_KEYS"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ValidationError) as raised:
            Settings()  # type: ignore[call-arg]
        missing = {error["loc"][0] for error in raised.value.errors()}
        assert missing == {"database_url", "tiktok_api_base_url", "encryption_keys"}
