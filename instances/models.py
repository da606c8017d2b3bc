"""The DPS instances the portal works with: where each one's service API is and its ARM id."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from instances.hosts import DpsHostError, dps_host_validate

RESOURCE_ID_RE = (
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.Devices/provisioningServices/[^/]+$"
)


class DpsInstance(models.Model):
    """A DPS instance the portal works with: where its service API is and its ARM id."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9-]{1,62}[A-Za-z0-9]$")],
        help_text="The DPS resource name, e.g. dps-fleet-prod.",
    )
    host = models.CharField(
        "service host",
        max_length=255,
        help_text="Host (and port) of the service API, e.g. "
        "dps-fleet-prod.azure-devices-provisioning.net.",
    )
    resource_id = models.CharField(
        "ARM resource id",
        max_length=512,
        validators=[RegexValidator(RESOURCE_ID_RE, "Not a DPS resource id.")],
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        verbose_name = "DPS instance"
        # The table authn created before the registry became its own app (migration
        # instances 0001 took the model over without touching data).
        db_table = "authn_dpsinstance"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a host a DPS token may not be sent to; store it bare (``host[:port]``)."""
        super().clean()
        if not self.host:
            return
        try:
            self.host = dps_host_validate(self.host, resource_id=self.resource_id or None)
        except DpsHostError as exc:
            raise ValidationError({"host": str(exc)}) from exc

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"

    def as_audit_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "resource_id": self.resource_id,
            "enabled": self.enabled,
        }
