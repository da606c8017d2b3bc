"""Client of the Azure IoT Hub Device Provisioning Service (DPS) service API 2021-10-01."""

from __future__ import annotations

from enrollments.dps.auth import bearer, parse_connection_string, sas_token_provider
from enrollments.dps.client import API_VERSION, DpsClient, iterate_pages
from enrollments.dps.exceptions import (
    DpsBadRequest,
    DpsConflict,
    DpsError,
    DpsForbidden,
    DpsInvalidResponse,
    DpsNotFound,
    DpsPreconditionFailed,
    DpsQuotaExceeded,
    DpsThrottled,
    DpsUnauthorized,
    DpsUnavailable,
)
from enrollments.dps.types import DpsApi, EnrollmentGroup, IndividualEnrollment, QueryPage

__all__ = [
    "API_VERSION",
    "DpsApi",
    "DpsBadRequest",
    "DpsClient",
    "DpsConflict",
    "DpsError",
    "DpsForbidden",
    "DpsInvalidResponse",
    "DpsNotFound",
    "DpsPreconditionFailed",
    "DpsQuotaExceeded",
    "DpsThrottled",
    "DpsUnauthorized",
    "DpsUnavailable",
    "EnrollmentGroup",
    "IndividualEnrollment",
    "QueryPage",
    "bearer",
    "iterate_pages",
    "parse_connection_string",
    "sas_token_provider",
]
