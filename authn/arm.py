"""A small client of Azure Resource Manager: permissions, a DPS resource and its CA certificates."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings

from portal.outgoing_http import OutgoingSession

API_VERSION = "2022-04-01"
# Microsoft.Devices/provisioningServices (IotDpsResource - Get).
DPS_RESOURCE_API_VERSION = "2022-02-05"
_MAX_PAGES = 20


class ArmError(Exception):
    """ARM could not answer. The message never contains the bearer token.

    ``detail`` is the error message ARM or the resource provider gave, for the user to read.
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail


class ArmUnauthorized(ArmError):
    """401: the token was refused (expired, wrong audience, wrong issuer)."""


class ArmForbidden(ArmError):
    """403: the caller may not read permissions at this scope."""


class ArmNotFound(ArmError):
    """404: the resource, resource group or subscription does not exist."""


class ArmPreconditionFailed(ArmError):
    """412: the ETag given in If-Match is not the resource's current one."""


class ArmUnavailable(ArmError):
    """Connection failure, timeout, 429 or 5xx."""


class ArmBadResponse(ArmError):
    """ARM answered 2xx with something that is not the documented shape."""


class ArmClient:
    """Call ARM as the user whose token is passed in; never touches models or requests."""

    def __init__(self, base_url: str | None = None, session: OutgoingSession | None = None) -> None:
        self.base_url = (
            base_url or settings.ARM_ENDPOINT or "https://management.azure.com"
        ).rstrip("/")
        self.session = session or OutgoingSession(
            "arm",
            float(settings.HTTP_TIMEOUT_SECONDS),
            max_retries=0,
            verify=settings.AZURE_CA_BUNDLE or True,
        )

    def permissions_for(self, resource_id: str, token: str) -> list[dict[str, Any]]:
        """Return the caller's permission blocks on ``resource_id``, all pages.

        https://learn.microsoft.com/rest/api/authorization/permissions/list-for-resource
        """
        if not resource_id.startswith("/"):
            raise ValueError("resource_id must start with /")
        url: str | None = (
            f"{self.base_url}{resource_id}/providers/Microsoft.Authorization/permissions"
        )
        params: dict[str, str] | None = {"api-version": API_VERSION}
        blocks: list[dict[str, Any]] = []
        own_host = urlsplit(self.base_url).netloc.lower()
        for _ in range(_MAX_PAGES):
            if url is None:
                return blocks
            body = self._get(url, params, token)
            value = body.get("value")
            if not isinstance(value, list):
                raise ArmBadResponse("ARM's permissions answer has no value list.")
            blocks.extend(b for b in value if isinstance(b, dict))
            next_link = body.get("nextLink")
            params = None  # nextLink carries its own query string
            if next_link and urlsplit(str(next_link)).netloc.lower() != own_host:
                # Never send the user's token to a host other than ARM's.
                raise ArmBadResponse("ARM's nextLink points at another host.")
            url = str(next_link) if next_link else None
        raise ArmBadResponse("ARM's permissions answer has too many pages.")

    def provisioning_service_get(self, resource_id: str, token: str) -> dict[str, Any]:
        """Return the ARM resource of a DPS instance (needs provisioningServices/read).

        https://learn.microsoft.com/rest/api/iot-dps/iot-dps-resource/get
        """
        if not resource_id.startswith("/"):
            raise ValueError("resource_id must start with /")
        return self._get(
            f"{self.base_url}{resource_id}", {"api-version": DPS_RESOURCE_API_VERSION}, token
        )

    # -- CA certificates of a DPS resource (Dps Certificate operations) -----------------------
    def certificates_list(self, resource_id: str, token: str) -> list[dict[str, Any]]:
        """Return the certificates of a DPS resource (``certificates/read``)."""
        body = self._get(
            self._cert_url(resource_id), {"api-version": DPS_RESOURCE_API_VERSION}, token
        )
        value = body.get("value")
        if not isinstance(value, list):
            raise ArmBadResponse("ARM's certificate list has no value list.")
        return [c for c in value if isinstance(c, dict)]

    def certificate_get(self, resource_id: str, name: str, token: str) -> dict[str, Any]:
        return self._get(
            self._cert_url(resource_id, name), {"api-version": DPS_RESOURCE_API_VERSION}, token
        )

    def certificate_put(
        self,
        resource_id: str,
        name: str,
        certificate_b64: str,
        token: str,
        *,
        is_verified: bool = False,
        etag: str | None = None,
    ) -> dict[str, Any]:
        """Create (no ``etag``) or replace a certificate (``certificates/write``)."""
        body = {"properties": {"certificate": certificate_b64, "isVerified": is_verified}}
        return self._call("PUT", self._cert_url(resource_id, name), token, body=body, etag=etag)

    def certificate_delete(self, resource_id: str, name: str, etag: str, token: str) -> None:
        self._call("DELETE", self._cert_url(resource_id, name), token, etag=etag)

    def certificate_generate_code(
        self, resource_id: str, name: str, etag: str, token: str
    ) -> dict[str, Any]:
        """Ask for a verification code; the answer's ``properties.verificationCode`` holds it."""
        url = self._cert_url(resource_id, name) + "/generateVerificationCode"
        return self._call("POST", url, token, etag=etag)

    def certificate_verify(
        self, resource_id: str, name: str, etag: str, proof_pem: str, token: str
    ) -> dict[str, Any]:
        """Send the verification certificate (signed by the CA's key, subject = the code)."""
        url = self._cert_url(resource_id, name) + "/verify"
        return self._call("POST", url, token, body={"certificate": proof_pem}, etag=etag)

    def _cert_url(self, resource_id: str, name: str = "") -> str:
        if not resource_id.startswith("/"):
            raise ValueError("resource_id must start with /")
        return f"{self.base_url}{resource_id}/certificates" + (
            f"/{quote(name, safe='')}" if name else ""
        )

    def _call(
        self,
        method: str,
        url: str,
        token: str,
        *,
        body: dict[str, Any] | None = None,
        etag: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if etag:
            headers["If-Match"] = etag
        try:
            response = self.session.request(
                method,
                url,
                params={"api-version": DPS_RESOURCE_API_VERSION},
                json=body,
                headers=headers,
            )
        except requests.RequestException as exc:
            raise ArmUnavailable(f"ARM could not be reached ({type(exc).__name__}).") from None
        return _answer(response, allow_empty=method == "DELETE")

    def _get(self, url: str, params: dict[str, str] | None, token: str) -> dict[str, Any]:
        try:
            response = self.session.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except requests.RequestException as exc:
            raise ArmUnavailable(f"ARM could not be reached ({type(exc).__name__}).") from None
        return _answer(response)


def _answer(response: requests.Response, *, allow_empty: bool = False) -> dict[str, Any]:
    """Return the JSON object of a 2xx answer; raise the ArmError subclass of any other."""
    status = response.status_code
    if 200 <= status < 300:
        if allow_empty and not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise ArmBadResponse("ARM answered with malformed JSON.") from None
        if not isinstance(data, dict):
            raise ArmBadResponse("ARM answered with an unexpected JSON document.")
        return data
    code, detail = _error_of(response)
    message = f"ARM answered {status}" + (f" ({code})" if code else "") + "."
    kind: type[ArmError] = ArmError
    if status == 401:
        kind = ArmUnauthorized
    elif status == 403:
        kind = ArmForbidden
    elif status == 404:
        kind = ArmNotFound
    elif status == 412:
        kind = ArmPreconditionFailed
    elif status == 429 or status >= 500:
        kind = ArmUnavailable
    raise kind(message, status=status, code=code, detail=detail)


def _error_of(response: requests.Response) -> tuple[str, str]:
    """Return (code, message) of ARM's ``{"error": {...}}`` or the provider's ErrorDetails."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    nested = body.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else body
    code = error.get("code")
    message = error.get("message")
    return (
        str(code)[:64] if code not in (None, "") else "",
        str(message)[:500] if isinstance(message, str) else "",
    )
