"""``manage.py portal_doctor``: check a deployment end to end and say what to fix, in words.

Each check returns :class:`Finding` rows (ok, warn or fail) naming what was checked, what was
found and, when it is not ok, what to do. Checks run in order and later ones are skipped when
what they need failed (no credential check without Entra discovery). Nothing secret is printed:
tokens, secrets and keys are never part of a finding.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

#: Beyond this, tokens and ID tokens start failing their time checks (oidc leeway: 120 s).
SKEW_WARN_SECONDS = 30.0
SKEW_FAIL_SECONDS = 120.0


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        """Return the finding as one or two lines of text."""
        text = f"{self.level.name:<4} {self.check}: {self.message}"
        return f"{text}\n     fix: {self.fix}" if self.fix else text


def ok(check: str, message: str) -> Finding:
    return Finding(Level.OK, check, message)


def warn(check: str, message: str, fix: str) -> Finding:
    return Finding(Level.WARN, check, message, fix)


def fail(check: str, message: str, fix: str) -> Finding:
    return Finding(Level.FAIL, check, message, fix)


def now() -> datetime:
    """Return this host's time (a function, so tests can move the clock)."""
    return datetime.now(UTC)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _verify() -> str | bool:
    return str(settings.AZURE_CA_BUNDLE) if settings.AZURE_CA_BUNDLE else True


# -- settings ---------------------------------------------------------------------------------
REQUIRED = {
    "ENTRA_TENANT_ID": "the directory (tenant) id of the portal's app registration",
    "ENTRA_CLIENT_ID": "the application (client) id of the portal's app registration",
    "ENTRA_AUTHORITY": "https://login.microsoftonline.com/<tenant id>",
    "TOKEN_CACHE_KEYS": "one Fernet key (newest first) to encrypt token caches",
    "AUDIT_HMAC_KEYS": "id:base64-key of the audit chain",
}


def check_settings() -> Iterator[Finding]:
    """Check that what sign-in, tokens and the audit log need is set."""
    missing = [name for name in REQUIRED if not getattr(settings, name, None)]
    for name in missing:
        yield fail("settings", f"{name} is not set.", f"Set {name}: {REQUIRED[name]}.")
    try:
        from authn.msal_app import credential_kind

        kind = credential_kind()
    except ImproperlyConfigured as exc:
        yield fail("settings", "The portal has no credential of its own.", str(exc))
        return
    if not missing:
        yield ok("settings", f"Entra ID settings present; the portal's credential is a {kind}.")


# -- Entra ID ---------------------------------------------------------------------------------
def _skew(check: str, response: requests.Response) -> Finding | None:
    """Compare the Date header of ``response`` with this host's clock."""
    date = response.headers.get("Date")
    if not date:
        return None
    try:
        theirs = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    seconds = (now() - theirs).total_seconds()
    text = f"this host's clock is {abs(seconds):.0f} s {'ahead of' if seconds > 0 else 'behind'} {check}"
    fix = "Synchronise the clock (NTP, chrony or systemd-timesyncd): tokens carry validity times."
    if abs(seconds) > SKEW_FAIL_SECONDS:
        return fail("clock", text + ".", fix)
    if abs(seconds) > SKEW_WARN_SECONDS:
        return warn("clock", text + ".", fix)
    return ok("clock", f"within {abs(seconds):.0f} s of {check}.")


def check_discovery() -> Iterator[Finding]:
    """Fetch Entra's OpenID configuration, as sign-in does."""
    url = f"{str(settings.ENTRA_AUTHORITY).rstrip('/')}/v2.0/.well-known/openid-configuration"
    try:
        response = _session().get(url, timeout=settings.HTTP_TIMEOUT_SECONDS, verify=_verify())
    except requests.exceptions.SSLError:
        yield fail(
            "entra",
            f"The TLS certificate of {url} is not trusted.",
            "Set AZURE_CA_BUNDLE to the CA of a TLS-inspecting proxy, or unset it for Azure.",
        )
        return
    except requests.RequestException as exc:
        yield fail(
            "entra",
            f"Entra ID discovery at {url} could not be reached ({type(exc).__name__}).",
            "Check ENTRA_AUTHORITY and that this host may reach login.microsoftonline.com "
            "(firewall, proxy).",
        )
        return
    if response.status_code != 200 or "issuer" not in response.text:
        yield fail(
            "entra",
            f"Entra ID discovery at {url} answered {response.status_code}.",
            "Check ENTRA_TENANT_ID and ENTRA_AUTHORITY: the tenant may not exist.",
        )
        return
    yield ok("entra", f"discovery document of {settings.ENTRA_AUTHORITY} read.")
    skew = _skew("Entra ID", response)
    if skew is not None:
        yield skew


def check_app_credential() -> Iterator[Finding]:
    """Ask Entra for a token for DPS with the portal's own credential (client credentials)."""
    from authn.msal_app import DPS_RESOURCE, build_app, resource_scope

    try:
        result = build_app().acquire_token_for_client(scopes=[resource_scope(DPS_RESOURCE)])
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        yield fail(
            "credential",
            f"Entra ID could not be asked for the portal's token ({type(exc).__name__}).",
            "Check ENTRA_AUTHORITY and the network path to Entra ID.",
        )
        return
    if result and result.get("access_token"):
        yield ok("credential", "the portal's own credential is accepted by Entra ID.")
        return
    error = str((result or {}).get("error") or "no answer")
    yield fail(
        "credential",
        f"Entra ID refused the portal's own credential ({error}).",
        "The client secret or certificate is wrong or expired: create a new one in the app "
        "registration (Certificates & secrets) and set ENTRA_CLIENT_SECRET or "
        "ENTRA_CLIENT_CERTIFICATE_PATH; check ENTRA_CLIENT_ID.",
    )


def _user(who: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    model = get_user_model()
    return (
        model.objects.filter(Q(username__iexact=who) | Q(entra_identity__upn__iexact=who))
        .order_by("pk")
        .first()
    )


def check_obo(who: str) -> Iterator[Finding]:
    """Exchange a signed-in user's token for DPS and ARM tokens (on behalf of the user)."""
    from authn.exceptions import ReauthRequired, TokenUnavailable
    from authn.msal_app import ARM_RESOURCE, DPS_RESOURCE
    from authn.tokens import token_for_user

    user = _user(who)
    if user is None:
        yield fail(
            "obo", f"No user {who} has signed in to this portal.", f"Sign in as {who} first."
        )
        return
    for label, resource in (("DPS", DPS_RESOURCE), ("ARM", ARM_RESOURCE)):
        try:
            token_for_user(user, resource)
        except ReauthRequired as exc:
            yield fail(
                "obo",
                f"{who} has no usable session for {label} ({exc}).",
                f"Sign in again as {who}; if it persists, grant the app registration the "
                f"delegated permission user_impersonation of {label} (API permissions) and "
                "admin consent.",
            )
        except TokenUnavailable as exc:
            yield fail("obo", f"The {label} token of {who} could not be had: {exc}", "See entra.")
        else:
            yield ok("obo", f"a {label} token on behalf of {who} was obtained.")


# -- DPS instances ----------------------------------------------------------------------------
def check_instance(instance: Any, *, entra_ok: bool = True) -> Iterator[Finding]:
    """Check one instance's host rules, TLS, reachability, clock and the app's read.

    The app's read needs the app's token: it is not checked when Entra ID failed.
    """
    from instances.hosts import DpsHostError, dps_host_validate

    name = f"instance {instance.name}"
    try:
        netloc = dps_host_validate(instance.host, resource_id=instance.resource_id)
    except DpsHostError as exc:
        yield fail(name, str(exc), "Correct the host on the instances page (/auth/instances/).")
        return
    response = yield from _reach(name, netloc)
    if response is None:
        return
    yield ok(name, f"{netloc} answers over TLS.")
    skew = _skew(netloc, response)
    if skew is not None:
        yield skew
    if entra_ok:
        yield from _app_read(name, instance)


def _reach(name: str, netloc: str) -> Generator[Finding, None, requests.Response | None]:
    # Yields the failure, returns the response (None when the host did not answer).
    try:
        response = _session().get(
            f"https://{netloc}/", timeout=settings.HTTP_TIMEOUT_SECONDS, verify=_verify()
        )
    except requests.exceptions.SSLError:
        yield fail(
            name,
            f"The TLS certificate of {netloc} is not trusted.",
            "Set AZURE_CA_BUNDLE to a bundle holding the issuing CA (TLS-inspecting proxy, "
            "emulators), or unset it to use the public CAs.",
        )
        return None
    except requests.RequestException as exc:
        yield fail(
            name,
            f"{netloc} could not be reached ({type(exc).__name__}).",
            "Check DNS, firewall and proxy from this host to the DPS service host, and that "
            "the instance exists.",
        )
        return None
    return response


def _app_read(name: str, instance: Any) -> Iterator[Finding]:
    from enrollments.dps.exceptions import DpsError, DpsForbidden, DpsUnauthorized
    from fleet.access import NoReadIdentity, app_client, query_raw

    try:
        query_raw(app_client(instance), "/enrollments/query", page_size=1, continuation=None)
    except (DpsForbidden, DpsUnauthorized, NoReadIdentity):
        yield warn(
            name,
            "the portal's app identity may not read the instance: the fleet index is read as "
            "the user who presses Refresh, and never in the background.",
            "Assign the app's service principal the role Device Provisioning Service Data "
            f"Reader on {instance.resource_id or instance.name}.",
        )
    except DpsError as exc:
        yield fail(name, f"reading as the app failed: {exc}", "See the DPS error above.")
    else:
        yield ok(name, "the portal's app identity may read the instance (fleet index).")


def diagnose(*, user: str | None = None) -> list[Finding]:
    """Run every check; return the findings in order."""
    from instances.models import DpsInstance

    findings = list(check_settings())
    if any(f.level is Level.FAIL for f in findings):
        return findings
    entra = list(check_discovery())
    findings += entra
    entra_ok = not any(f.level is Level.FAIL and f.check == "entra" for f in entra)
    if entra_ok:
        credential = list(check_app_credential())
        findings += credential
        entra_ok = all(f.level is Level.OK for f in credential)
        if user:
            findings += check_obo(user)
    instances = DpsInstance.objects.filter(enabled=True).order_by("name")
    if not instances:
        findings.append(
            warn("instances", "No DPS instance is registered.", "Add one on /auth/instances/.")
        )
    for instance in instances:
        findings += check_instance(instance, entra_ok=entra_ok)
    return findings
