"""Errors of sign-in, token acquisition and permission lookup.

Messages never contain tokens, codes or secrets: they may be shown to users and logged.
"""

from __future__ import annotations


class AuthnError(Exception):
    """Base class of every authn error."""


class SigninError(AuthnError):
    """The sign-in could not be completed (bad state, replay, invalid ID token, IdP error)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class SigninUnavailable(SigninError):
    """Entra ID could not be reached or answered with a server error."""


class ReauthRequired(AuthnError):
    """The user must sign in again (refresh token expired or revoked, MFA or consent needed).

    ``error`` is Entra's ``error`` value (``invalid_grant``, ``interaction_required``...);
    ``suberror`` and ``claims`` help a later step-up but never contain a token.
    """

    def __init__(self, error: str = "", *, suberror: str = "", claims: str = "") -> None:
        super().__init__(f"the user must sign in again ({error or 'no cached account'})")
        self.error = error
        self.suberror = suberror
        self.claims = claims


class TokenUnavailable(AuthnError):
    """Entra ID could not be reached, or answered with an error that re-signing cannot fix."""

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class PermissionLookupFailed(AuthnError):
    """ARM could not tell which data actions the user has; callers fail closed."""
