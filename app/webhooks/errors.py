"""Why a webhook subscription is refused or not found. Each reason is stable: callers switch on it."""

from __future__ import annotations

from app.kit.errors import ProblemError


class WebhookNotFound(ProblemError):
    status = 404
    reason = "webhook_not_found"
    title = "No webhook subscription with this id"


class WebhookUrlInvalid(ProblemError):
    status = 422
    reason = "webhook_url_invalid"
    title = "The webhook URL must be an absolute http(s) URL with a host, no userinfo and no fragment"
