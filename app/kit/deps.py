"""Process-wide resources opened by the lifespan, handed to routes as dependencies.

Every dependency in the app is `async def`, even one that awaits nothing: FastAPI runs a plain `def` dependency in a
thread pool, a hop there and back on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.kit.crypto import SecretBox
from app.kit.settings import Settings
from app.tiktok.client import TikTokClient


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


async def _tiktok(request: Request) -> TikTokClient:
    client: TikTokClient = request.app.state.tiktok
    return client


AppSettings = Annotated[Settings, Depends(_settings)]
Secrets = Annotated[SecretBox, Depends(_secret_box)]
TikTok = Annotated[TikTokClient, Depends(_tiktok)]
