"""The form of the DPS instance registry page."""

from __future__ import annotations

from django import forms

from instances.models import DpsInstance


class DpsInstanceForm(forms.ModelForm):
    class Meta:
        model = DpsInstance
        fields = ("name", "host", "resource_id", "enabled")
