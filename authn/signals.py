"""Signals authn sends to the apps that build on it."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by the token cache purge (authn.tasks). Each receiver returns the ids of users whose
# token caches must stay although they have no live session: a bulk job running as its
# owner, for instance, still needs the owner's tokens after the browser session expired.
token_cache_holders = Signal()
