from __future__ import annotations

from app.kit.errors import ProblemError


class AdminRequired(ProblemError):
    status = 403
    reason = "admin_required"
    title = "Only an admin API key may do this"


class ApiKeyNotFound(ProblemError):
    status = 404
    reason = "api_key_not_found"
    title = "No API key with this id"


class CannotRevokeOwnKey(ProblemError):
    status = 409
    reason = "cannot_revoke_own_key"
    title = "An API key cannot revoke itself; revoke it with another admin key"


class ScopeRequired(ProblemError):
    status = 403
    reason = "scope_required"
    title = "This API key's scopes do not allow this"
