from __future__ import annotations

from app.kit.errors import ProblemError


class AdvertiserNotFound(ProblemError):
    status = 404
    reason = "advertiser_not_found"
    title = "No ad account with this id is registered"


class AdvertiserAlreadyExists(ProblemError):
    status = 409
    reason = "advertiser_already_exists"
    title = "This ad account is already registered"
