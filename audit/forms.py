"""The filter form of the audit pages (GET parameters in, AuditFilters out)."""

from __future__ import annotations

from django import forms

from audit.models import AuditAction, AuditOutcome, AuditTargetType
from audit.selectors import AuditFilters

KNOWN_TARGET_TYPES: tuple[str, ...] = tuple(AuditTargetType.values)


class AuditFilterForm(forms.Form):
    """Validate the list filters; an invalid field is reported and ignored, never guessed."""

    q = forms.CharField(required=False, max_length=200, strip=True, label="Search")
    actor = forms.CharField(
        required=False, max_length=255, strip=True, label="Actor (UPN or object id)"
    )
    action = forms.ChoiceField(required=False, choices=[("", "Any action"), *AuditAction.choices])
    dps_instance = forms.CharField(required=False, max_length=128, strip=True, label="DPS instance")
    target_type = forms.CharField(required=False, max_length=64, strip=True, label="Target type")
    target_id = forms.CharField(required=False, max_length=255, strip=True, label="Target id")
    outcome = forms.ChoiceField(
        required=False, choices=[("", "Any outcome"), *AuditOutcome.choices]
    )
    since = forms.DateTimeField(required=False, label="From (UTC)")
    until = forms.DateTimeField(required=False, label="To (UTC)")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "The end of the range must be after its start.")
        return data

    def filters(self) -> AuditFilters:
        """Return the valid filters; fields with errors are left out."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return AuditFilters(
            q=data.get("q") or "",
            actor=data.get("actor") or "",
            action=data.get("action") or "",
            dps_instance=data.get("dps_instance") or "",
            target_type=data.get("target_type") or "",
            target_id=data.get("target_id") or "",
            outcome=data.get("outcome") or "",
            since=data.get("since"),
            until=data.get("until"),
        )
