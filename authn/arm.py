"""A small client of Azure Resource Manager: permissions on a resource, a DPS resource."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from portal.outgoing_http import OutgoingSession

API_VERSION = "2022-04-01"
# Microsoft.Devices/provisioningServices (IotDpsResource - Get).
DPS_RESOURCE_API_VERSION = "2022-02-05"
_MAX_PAGES = 20


class ArmError(Exception):
    """ARM could not answer. The message never contains the bearer token."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ArmUnauthorized(ArmError):
    """401: the token was refused (expired, wrong audience, wrong issuer)."""


class ArmForbidden(ArmError):
    """403: the caller may not read permissions at this scope."""


class ArmNotFound(ArmError):
    """404: the resource, resource group or subscription does not exist."""


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

    def _get(self, url: str, params: dict[str, str] | None, token: str) -> dict[str, Any]:
        try:
            response = self.session.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except requests.RequestException as exc:
            raise ArmUnavailable(f"ARM could not be reached ({type(exc).__name__}).") from None
        status = response.status_code
        if status == 200:
            try:
                data = response.json()
            except ValueError:
                raise ArmBadResponse("ARM answered with malformed JSON.") from None
            if not isinstance(data, dict):
                raise ArmBadResponse("ARM answered with an unexpected JSON document.")
            return data
        code = _error_code(response)
        message = f"ARM answered {status}" + (f" ({code})" if code else "") + "."
        if status == 401:
            raise ArmUnauthorized(message, status=status, code=code)
        if status == 403:
            raise ArmForbidden(message, status=status, code=code)
        if status == 404:
            raise ArmNotFound(message, status=status, code=code)
        if status == 429 or status >= 500:
            raise ArmUnavailable(message, status=status, code=code)
        raise ArmError(message, status=status, code=code)


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:64] if code else ""
