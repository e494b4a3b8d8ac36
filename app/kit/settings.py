"""Typed settings, read from the environment once.

Five settings are enough to start the service (DATABASE_URL, TIKTOK_API_BASE_URL, ENCRYPTION_KEYS,
API_KEY_SECRET, and BOOTSTRAP_API_KEY for the first key); everything else has a safe default. Outside development
a missing or placeholder secret is refused at start-up rather than discovered at the first request.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values people leave in example files. A secret that contains one of these is not a secret.
_PLACEHOLDER_MARKERS = (
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "dummy",
    "secret",
    "xxxx",
)


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


def _looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in _PLACEHOLDER_MARKERS)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Environment = Environment.production
    database_url: str = Field(description="postgresql+asyncpg://user:password@host:port/database")
    tiktok_api_base_url: str = Field(
        description="The part of TikTok's URL before `v1.3/`, e.g. https://business-api.tiktok.com/open_api/"
    )
    bootstrap_api_key: SecretStr | None = None
    # The secret API keys are hashed under (HMAC). The API refuses to start without it; commands do not need it.
    api_key_secret: SecretStr | None = None
    # How long a replica may keep using what it read about an API key (its scopes, its ad accounts, that it is not
    # revoked). Changes reach every replica at once by notification; this bounds it if one is lost. 0: no cache.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(
        description="Comma-separated url-safe base64 32-byte keys; the first encrypts, all decrypt."
    )

    # Policy (D9): TikTok's own page says there is no duration limit, the guide says 10 minutes.
    max_video_duration_seconds: float = Field(default=600.0, gt=0)
    # TikTok's API docs cap one identity (a creator, or the brand's own account) at 10,000 ads.
    identity_ads_limit: int = Field(default=10_000, ge=1)

    # How hard to try TikTok before answering 502/503/504 (transient faults only; permanent ones never retry).
    tiktok_deadline_seconds: float = Field(default=15.0, gt=0)
    tiktok_request_timeout_seconds: float = Field(default=5.0, gt=0)
    tiktok_max_attempts: int = Field(default=4, ge=1, le=10)
    # TikTok's calls per second for this developer app (Basic tier: 10), shared by every replica.
    tiktok_qps: int = Field(default=10, ge=1, le=1000)

    # The largest request body the API reads (413 `request_too_large` beyond it). A batch of 20 codes is a few KiB.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # The worker (app/worker): inside the API process unless turned off (then run `python -m app.worker`).
    worker_in_process: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=100)
    # When to emit authorization.expiring before a window ends: comma-separated durations (s, m, h, d).
    expiry_reminder_leads: Annotated[list[int], NoDecode] = Field(default=[7 * 86400, 3 * 86400, 86400])
    # Each ad account is reconciled with TikTok once per period, the ad accounts spread over it.
    reconcile_period_seconds: int = Field(default=3600, ge=60)
    # One webhook delivery's whole request, connection included.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # GET /metrics (Prometheus), without an API key: on the API's port, or on a port of its own, or not at all.
    metrics_enabled: bool = True
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104 (the metrics port is meant to be scraped from outside the container)

    database_pool_size: int = Field(default=10, ge=1)
    database_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    database_pool_overflow: int = Field(default=0, ge=0)
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.json

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _keys_are_fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if not keys:
            raise ValueError("at least one key is required")
        for position, key in enumerate(keys, start=1):
            try:
                raw = base64.urlsafe_b64decode(key.get_secret_value().encode())
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"key {position} is not url-safe base64") from exc
            if len(raw) != 32:
                raise ValueError(f"key {position} must decode to 32 bytes, not {len(raw)}")
        return keys

    @field_validator("expiry_reminder_leads", mode="before")
    @classmethod
    def _parse_leads(cls, value: object) -> object:
        if isinstance(value, str):
            return sorted({_duration_seconds(part.strip()) for part in value.split(",") if part.strip()}, reverse=True)
        return value

    @field_validator("expiry_reminder_leads")
    @classmethod
    def _positive_leads(cls, leads: list[int]) -> list[int]:
        if any(lead <= 0 for lead in leads):
            raise ValueError("every lead time must be positive")
        return sorted(set(leads), reverse=True)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("postgres://", "postgresql://")):
            # Accept the common libpq form and use the async driver the service needs.
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql+asyncpg:// URL")
        return value

    @field_validator("tiktok_api_base_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://business-api.tiktok.com/open_api/")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _refuse_weak_secrets_outside_development(self) -> Self:
        if self.environment is Environment.development:
            return self
        if self.bootstrap_api_key is not None:
            api_key = self.bootstrap_api_key.get_secret_value()
            if len(api_key) < 32 or _looks_like_placeholder(api_key):
                raise ValueError("BOOTSTRAP_API_KEY looks like a placeholder: use at least 32 random characters")
        if self.api_key_secret is not None:
            secret = self.api_key_secret.get_secret_value()
            if len(secret) < 32 or _looks_like_placeholder(secret):
                raise ValueError("API_KEY_SECRET looks like a placeholder: use at least 32 random characters")
        for key in self.encryption_keys:
            raw = base64.urlsafe_b64decode(key.get_secret_value().encode())
            if len(set(raw)) < 8:
                raise ValueError("ENCRYPTION_KEYS holds a key that is not random")
        return self


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_seconds(text: str) -> int:
    """`7d`, `12h`, `30m`, `45s`, or a bare number of seconds."""
    if text[-1:] in _UNITS:
        number, unit = text[:-1], _UNITS[text[-1]]
    else:
        number, unit = text, 1
    try:
        return int(float(number) * unit)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 30m or 45s") from None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()  # required fields come from the environment
