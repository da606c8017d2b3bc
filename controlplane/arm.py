"""Call ARM on behalf of the signed-in user: the token, the client, what an error means."""

from __future__ import annotations

from typing import Any

from authn.arm import (
    ArmClient,
    ArmError,
    ArmForbidden,
    ArmNotFound,
    ArmPreconditionFailed,
    ArmUnavailable,
)
from authn.msal_app import ARM_RESOURCE


def arm_token(user: Any) -> str:
    """Return the user's ARM token (raises ReauthRequired / TokenUnavailable like DPS calls)."""
    from authn.tokens import token_for_user

    return token_for_user(user, ARM_RESOURCE)


def arm_client() -> ArmClient:
    return ArmClient()


def explain(exc: ArmError, *, what: str) -> str:
    """Say in words what went wrong, for the page; never includes the token."""
    if isinstance(exc, ArmPreconditionFailed):
        return (
            f"{what} was changed by someone else since you loaded this page (its ETag no longer "
            "matches), so nothing was done. Reload the page and try again."
        )
    if isinstance(exc, ArmForbidden):
        return f"Azure refused: your Azure role does not allow this on {what}."
    if isinstance(exc, ArmNotFound):
        return f"{what} was not found; it may have been deleted."
    if isinstance(exc, ArmUnavailable):
        return "Azure Resource Manager could not be reached; nothing was changed. Try again later."
    if exc.detail:
        return f"Azure refused: {exc.detail}"
    return f"Azure refused the request ({exc})."
