"""The list filters of the fleet pages, declared with django-filter (NetBox's filtersets).

The filterset parses and validates the URL (filters live in it, so a view can be bookmarked);
:meth:`RecordFilterSet.record_query` turns the clean values into the selector's
:class:`~fleet.selectors.RecordQuery`, and ``qs`` applies them through the same selector.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError

from fleet.models import IndexedRecord, IndexedRegistration
from fleet.registrations import SORTS as REGISTRATION_SORTS
from fleet.registrations import RegistrationQuery
from fleet.selectors import PER_PAGE, SORTS, RecordQuery, records_matching

_BOOL = (("true", "yes"), ("false", "no"))


def _tag(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise ValidationError("Write a tag filter as key=value.")
    return key.strip(), val.strip()


class RecordFilterSet(django_filters.FilterSet):
    """Search, filters, sort and page of the enrollment and group lists."""

    q = django_filters.CharFilter(label="Registration or device id", max_length=128)
    match = django_filters.ChoiceFilter(
        label="Match",
        choices=(("prefix", "starts with"), ("contains", "contains")),
        empty_label=None,
    )
    status = django_filters.ChoiceFilter(choices=(("enabled", "enabled"), ("disabled", "disabled")))
    attestation = django_filters.ChoiceFilter(
        choices=(("symmetricKey", "symmetric key"), ("x509", "X.509"), ("tpm", "TPM"))
    )
    hub = django_filters.CharFilter(label="IoT hub", max_length=255)
    allocation_policy = django_filters.ChoiceFilter(
        choices=[(p, p) for p in ("hashed", "geoLatency", "static", "custom")]
    )
    iot_edge = django_filters.ChoiceFilter(label="IoT Edge", choices=_BOOL)
    tag = django_filters.CharFilter(label="Tag (key=value)", max_length=300)
    registration_status = django_filters.ChoiceFilter(
        choices=[(s, s) for s in ("assigned", "assigning", "failed", "disabled", "unassigned")]
    )
    expires_within = django_filters.NumberFilter(label="Certificate expires within (days)")
    expired = django_filters.BooleanFilter(label="Certificate expired", widget=forms.CheckboxInput)
    drifted = django_filters.BooleanFilter(
        label="Changed outside the portal", widget=forms.CheckboxInput
    )
    sort = django_filters.ChoiceFilter(choices=[(s, s) for s in SORTS], empty_label=None)
    page = django_filters.NumberFilter(min_value=1)

    class Meta:
        model = IndexedRecord
        fields: list[str] = []

    def __init__(self, data: Any = None, *, instance: Any, kind: str, **kw: Any) -> None:
        super().__init__(data, queryset=IndexedRecord.objects.none(), **kw)
        self.instance = instance
        self.kind = kind

    def record_query(self) -> RecordQuery:
        """Return the selector's query of the valid filters (call ``is_valid()`` first)."""
        data: dict[str, Any] = self.form.cleaned_data
        tags = dict([_tag(data["tag"])]) if data.get("tag") else {}
        days = data.get("expires_within")
        edge = data.get("iot_edge")
        return RecordQuery(
            search=data.get("q") or "",
            match=data.get("match") or "prefix",
            status=data.get("status") or "",
            attestation=data.get("attestation") or "",
            hub=data.get("hub") or "",
            allocation_policy=data.get("allocation_policy") or "",
            iot_edge=None if not edge else edge == "true",
            tags=tags,
            registration_status=data.get("registration_status") or "",
            expires_within_days=int(days) if days is not None else None,
            expired=bool(data.get("expired")),
            drifted=bool(data.get("drifted")),
            sort=data.get("sort") or "id",
            page=int(data.get("page") or 1),
            per_page=PER_PAGE,
        )

    def is_valid(self) -> bool:
        if not super().is_valid():
            return False
        if self.form.cleaned_data.get("tag"):
            try:
                _tag(self.form.cleaned_data["tag"])
            except ValidationError as exc:
                self.form.add_error("tag", exc)
                return False
        return True

    def filter_queryset(self, queryset: Any) -> Any:
        """Apply the filters through the selector (one definition of what each one means)."""
        return records_matching(self.instance, self.kind, self.record_query())


class RegistrationFilterSet(django_filters.FilterSet):
    """Search, status and hub filters, sort and page of registration records."""

    q = django_filters.CharFilter(label="Registration or device id", max_length=128)
    match = django_filters.ChoiceFilter(
        label="Match",
        choices=(("prefix", "starts with"), ("contains", "contains")),
        empty_label=None,
    )
    status = django_filters.ChoiceFilter(
        choices=[(s, s) for s in ("assigned", "assigning", "failed", "disabled", "unassigned")]
    )
    hub = django_filters.CharFilter(label="Assigned hub", max_length=255)
    sort = django_filters.ChoiceFilter(
        choices=[(s, s) for s in REGISTRATION_SORTS], empty_label=None
    )
    page = django_filters.NumberFilter(min_value=1)

    class Meta:
        model = IndexedRegistration
        fields: list[str] = []

    def __init__(self, data: Any = None, **kw: Any) -> None:
        super().__init__(data, queryset=IndexedRegistration.objects.none(), **kw)

    def registration_query(self) -> RegistrationQuery:
        """Return the selector's query of the valid filters (call ``is_valid()`` first)."""
        data: dict[str, Any] = self.form.cleaned_data
        return RegistrationQuery(
            search=data.get("q") or "",
            match=data.get("match") or "prefix",
            status=data.get("status") or "",
            hub=data.get("hub") or "",
            sort=data.get("sort") or "id",
            page=int(data.get("page") or 1),
        )
