"""Forms of individual enrollments and enrollment groups: every DPS field, checked in words.

Validation reuses :mod:`enrollments.validation`, so a form shows the same sentence next to the
field that the CSV import shows for a row, before anything is sent to DPS. ``build()`` turns the
cleaned data into the DPS model, starting from the record that was read so fields the form
does not show (``iotHubHostName``, keys DPS added later) survive an edit; the attestation body
comes from :mod:`enrollments.attestation`, the builder the CSV import uses too.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Generic, TypeVar

from django import forms
from django.core.exceptions import ValidationError

from controlplane.references import ca_label, check_ca_reference, check_iot_hubs, hub_label
from controlplane.types import CaCertificate, Choices, LinkedHub
from enrollments import validation as v
from enrollments.attestation import (
    AttestationBody,
    ca_reference_attestation,
    certificate_attestation,
    certificate_slot,
    symmetric_key_attestation,
    tpm_attestation,
)
from enrollments.dps.types import (
    AttestationMechanism,
    DeviceCapabilities,
    EnrollmentGroup,
    IndividualEnrollment,
    InitialTwin,
    ReprovisionPolicy,
    X509Attestation,
)

RecordT = TypeVar("RecordT", IndividualEnrollment, EnrollmentGroup)

REPROVISION = {
    "": None,
    "migrate": (True, True),
    "reset": (True, False),
    "never_migrate": (False, True),
    "never": (False, False),
}
REPROVISION_LABELS = [
    ("", "Not set (DPS default: re-provision and migrate data)"),
    ("migrate", "Re-provision and migrate data"),
    ("reset", "Re-provision and reset to the initial twin"),
    ("never_migrate", "Never re-provision (migrate data flag kept on)"),
    ("never", "Never re-provision"),
]
ALLOCATION_LABELS = [
    ("", "The DPS instance's policy"),
    ("hashed", "Evenly weighted distribution (hashed)"),
    ("geoLatency", "Lowest latency (geoLatency)"),
    ("static", "Static configuration (one hub)"),
    ("custom", "Custom (Azure Function webhook)"),
]
_HUBS_HELP = "The instance's linked hubs (Ctrl or ⌘ to choose several); none chosen: every one."
_SPLIT = re.compile(r"[\s,;]+")
#: The field of each input of ``validate_allocation``, to put its errors on.
_ALLOCATION_FIELDS = {
    "policy": "allocation_policy",
    "webhook_url": "webhook_url",
    "api_version": "webhook_api_version",
}


def _textarea(rows: int = 3, mono: bool = False) -> forms.Textarea:
    css = "form-control font-monospace" if mono else "form-control"
    return forms.Textarea(attrs={"rows": rows, "class": css, "spellcheck": "false"})


def _text(**attrs: str) -> forms.TextInput:
    return forms.TextInput(attrs={"class": "form-control", "autocomplete": "off", **attrs})


def _select() -> forms.Select:
    return forms.Select(attrs={"class": "form-select"})


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) if value else ""


def _reprovision_choice(policy: ReprovisionPolicy | None) -> str:
    if policy is None:
        return ""
    pair = (bool(policy.update_hub_assignment), bool(policy.migrate_device_data))
    return next(k for k, val in REPROVISION.items() if val == pair)


class _AnyHubField(forms.MultipleChoiceField):
    """A multi-select of hubs that lets any value through: ``clean()`` names the linked ones."""

    def valid_value(self, value: str) -> bool:
        return True


class _EnrollmentFieldsForm(forms.Form, Generic[RecordT]):
    """The fields individual enrollments and groups share."""

    is_group = False

    attestation_type = forms.ChoiceField(label="Attestation", widget=_select())
    attestation_keep = forms.BooleanField(
        label="Keep the current attestation (keys and certificates unchanged)",
        required=False,
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )
    tpm_endorsement_key = forms.CharField(
        label="Endorsement key (base64)", required=False, widget=_textarea(4, mono=True)
    )
    tpm_storage_root_key = forms.CharField(
        label="Storage root key (base64, optional)", required=False, widget=_textarea(3, mono=True)
    )
    x509_kind = forms.ChoiceField(
        label="X.509 by", required=False, initial="certificates", widget=_select()
    )
    x509_primary = forms.CharField(
        label="Primary certificate (PEM or base64)", required=False, widget=_textarea(6, mono=True)
    )
    x509_secondary = forms.CharField(
        label="Secondary certificate (optional)", required=False, widget=_textarea(6, mono=True)
    )
    ca_primary = forms.CharField(
        label="Primary CA certificate name", required=False, widget=_text()
    )
    ca_secondary = forms.CharField(
        label="Secondary CA certificate name (optional)", required=False, widget=_text()
    )
    key_mode = forms.ChoiceField(
        label="Symmetric keys",
        choices=[("generate", "Let DPS generate the keys"), ("given", "Enter the keys")],
        initial="generate",
        required=False,
        widget=_select(),
    )
    primary_key = forms.CharField(
        label="Primary key (base64)", required=False, widget=_text(spellcheck="false")
    )
    secondary_key = forms.CharField(
        label="Secondary key (base64)", required=False, widget=_text(spellcheck="false")
    )
    iot_hubs = forms.CharField(
        label="IoT hubs",
        required=False,
        help_text="Host names, one per line (e.g. myhub.azure-devices.net). Empty: every linked hub.",
        widget=_textarea(2),
    )
    allocation_policy = forms.ChoiceField(
        label="Allocation policy", choices=ALLOCATION_LABELS, required=False, widget=_select()
    )
    webhook_url = forms.CharField(
        label="Webhook URL (https)", required=False, widget=_text(type="url")
    )
    webhook_api_version = forms.CharField(
        label="Webhook API version", required=False, widget=_text(placeholder="2021-10-01")
    )
    reprovision_policy = forms.ChoiceField(
        label="When a device provisions again",
        choices=REPROVISION_LABELS,
        required=False,
        widget=_select(),
    )
    twin_tags = forms.CharField(
        label="Initial twin tags (JSON)", required=False, widget=_textarea(4, mono=True)
    )
    twin_desired = forms.CharField(
        label="Initial desired properties (JSON)", required=False, widget=_textarea(4, mono=True)
    )
    iot_edge = forms.BooleanField(
        label="IoT Edge device",
        required=False,
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )
    provisioning_status = forms.ChoiceField(
        label="Provisioning status",
        choices=[("enabled", "Enabled"), ("disabled", "Disabled")],
        initial="enabled",
        widget=_select(),
    )
    etag = forms.CharField(required=False, widget=forms.HiddenInput())

    def __init__(
        self,
        *args: Any,
        existing: RecordT | None = None,
        hub_choices: Choices[LinkedHub] | None = None,
        ca_choices: Choices[CaCertificate] | None = None,
        **kw: Any,
    ) -> None:
        """``hub_choices`` / ``ca_choices``: the instance's linked hubs and verified CAs.

        Given, the hub and CA fields become choices and anything else is refused; given with a
        ``reason``, the fields stay text and show why; left out, the fields are free text.
        """
        self.existing: RecordT | None = existing
        self.linked_hubs: list[str] | None = None
        self.verified_cas: list[str] | None = None
        if existing is not None and "initial" not in kw:
            # Also when bound: disabled fields (the id) take their value from ``initial``.
            kw["initial"] = self.initial_from(existing)
        super().__init__(*args, **kw)
        types = [("x509", "X.509 certificate"), ("symmetricKey", "Symmetric key")]
        if not self.is_group:
            types.insert(0, ("tpm", "TPM"))
        self._choice_field("attestation_type").choices = types
        certs = (
            "Signing certificates (root or intermediate CA)"
            if self.is_group
            else ("Client certificates (the device's own)")
        )
        self._choice_field("x509_kind").choices = [
            ("certificates", certs),
            ("ca_references", "CA certificates uploaded to DPS"),
        ]
        if existing is None:
            del self.fields["attestation_keep"]
            del self.fields["etag"]
        if hub_choices is not None:
            self._offer_hubs(hub_choices)
        if ca_choices is not None:
            self._offer_cas(ca_choices)

    def _offer_hubs(self, choices: Choices[LinkedHub]) -> None:
        field = self.fields["iot_hubs"]
        if not choices.available:
            field.help_text = f"{field.help_text} {choices.reason}"
            return
        self.linked_hubs = [h.name for h in choices.items]
        current = self.initial.get("iot_hubs") or ""
        chosen = [h for h in _SPLIT.split(current) if h] if isinstance(current, str) else current
        options = [(h.name, hub_label(h)) for h in choices.items]
        # A hub the record names but the instance no longer links stays visible (and refused).
        linked = {h.lower() for h in self.linked_hubs}
        options += [(h, f"{h} (not linked)") for h in chosen if h.lower() not in linked]
        self.initial["iot_hubs"] = chosen
        self.fields["iot_hubs"] = _AnyHubField(
            label=field.label,
            required=False,
            choices=options,
            help_text=_HUBS_HELP if options else "No IoT hub is linked to this DPS instance.",
            widget=forms.SelectMultiple(
                attrs={"class": "form-select", "size": str(min(max(len(options), 3), 8))}
            ),
        )

    def _offer_cas(self, choices: Choices[CaCertificate]) -> None:
        if not choices.available:
            for name in ("ca_primary", "ca_secondary"):
                field = self.fields[name]
                field.help_text = f"{field.help_text} {choices.reason}".strip()
            return
        self.verified_cas = [c.name for c in choices.items]
        options: list[tuple[str, str]] = [(c.name, ca_label(c)) for c in choices.items]
        verified = {n.lower() for n in self.verified_cas}
        for name, blank in (
            ("ca_primary", "Choose a verified CA certificate"),
            ("ca_secondary", "None"),
        ):
            field = self.fields[name]
            current = str(self.initial.get(name) or "")
            unknown = current and current.lower() not in verified
            extra: list[tuple[str, str]] = (
                [(current, f"{current} (not verified)")] if unknown else []
            )
            # A CharField with a select: any name posted reaches clean(), which says what is wrong.
            field.widget = forms.Select(
                attrs={"class": "form-select"}, choices=[("", blank), *options, *extra]
            )
            field.help_text = (
                "Verified CA certificates of this instance (the Certificates page)."
                if options
                else "No verified CA certificate on this instance: upload one and prove "
                "possession on the Certificates page."
            )

    def _choice_field(self, name: str) -> forms.ChoiceField:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        return field

    # -- reading an existing record ---------------------------------------------------------
    @classmethod
    def initial_from(cls, model: IndividualEnrollment | EnrollmentGroup) -> dict[str, Any]:
        """Return form values for ``model``; secrets are never put into the form."""
        att = model.attestation
        x509 = att.x509 or X509Attestation()
        refs = x509.ca_references
        twin = model.initial_twin
        cad = model.custom_allocation_definition
        initial: dict[str, Any] = {
            "attestation_type": att.type,
            "attestation_keep": not cls.needs_certificates(model),
            "x509_kind": "ca_references" if refs else "certificates",
            "ca_primary": refs.primary if refs else "",
            "ca_secondary": refs.secondary if refs else "",
            "key_mode": "generate",
            "iot_hubs": "\n".join(model.iot_hubs or []),
            "allocation_policy": model.allocation_policy or "",
            "webhook_url": cad.webhook_url if cad else "",
            "webhook_api_version": cad.api_version if cad else "",
            "reprovision_policy": _reprovision_choice(model.reprovision_policy),
            "twin_tags": _json_text(twin.tags if twin else None),
            "twin_desired": _json_text(twin.desired if twin else None),
            "iot_edge": bool(model.capabilities and model.capabilities.iot_edge),
            "provisioning_status": model.provisioning_status or "enabled",
            "etag": model.etag or "",
        }
        return initial

    @staticmethod
    def needs_certificates(model: IndividualEnrollment | EnrollmentGroup) -> bool:
        """Return whether an edit must carry the certificates again (DPS never returns them)."""
        x509 = model.attestation.x509
        return bool(
            model.attestation.type == "x509"
            and x509
            and (x509.client_certificates or x509.signing_certificates)
        )

    # -- validation ---------------------------------------------------------------------------
    def _check(self, field: str, func: Any, *args: Any, **kw: Any) -> Any:
        try:
            return func(*args, **kw)
        except ValidationError as exc:
            self.add_error(field, exc)
            return None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cd = self.cleaned_data
        kind = cd.get("attestation_type")
        keep = bool(cd.get("attestation_keep"))
        if self.existing is not None and keep:
            if kind != self.existing.attestation.type:
                self.add_error(
                    "attestation_keep",
                    "Untick “keep the current attestation” to change the attestation type.",
                )
            elif self.needs_certificates(self.existing):
                self.add_error(
                    "x509_primary",
                    "DPS does not return certificates, so an edit must send them again: "
                    "paste the current certificate (or a new one).",
                )
        if not keep or self.existing is None:
            self._clean_attestation(cd, kind)
        raw_hubs = cd.get("iot_hubs") or ""
        hubs = self._check(
            "iot_hubs",
            check_iot_hubs,
            _SPLIT.split(raw_hubs) if isinstance(raw_hubs, str) else raw_hubs,
            self.linked_hubs,
        )
        cd["hubs"] = hubs or []
        try:
            cd["allocation"] = v.validate_allocation(
                cd.get("allocation_policy"),
                iot_hubs=cd["hubs"],
                webhook_url=cd.get("webhook_url"),
                api_version=cd.get("webhook_api_version"),
            )
        except ValidationError as exc:
            self.add_error(_ALLOCATION_FIELDS[v.allocation_error_input(exc)], exc)
        cd["tags"] = self._check("twin_tags", v.parse_twin_json, cd.get("twin_tags"), "Tags")
        cd["desired"] = self._check(
            "twin_desired", v.parse_twin_json, cd.get("twin_desired"), "Desired properties"
        )
        return cd

    def _clean_attestation(self, cd: dict[str, Any], kind: str | None) -> None:
        if kind == "tpm":
            cd["ek"] = self._check(
                "tpm_endorsement_key", v.validate_endorsement_key, cd.get("tpm_endorsement_key")
            )
            cd["srk"] = self._check(
                "tpm_storage_root_key", v.validate_storage_root_key, cd.get("tpm_storage_root_key")
            )
        elif kind == "x509" and cd.get("x509_kind") == "ca_references":
            cas = self.verified_cas
            cd["ca1"] = self._check("ca_primary", check_ca_reference, cd.get("ca_primary"), cas)
            second = (cd.get("ca_secondary") or "").strip()
            cd["ca2"] = (
                self._check("ca_secondary", check_ca_reference, second, cas) if second else None
            )
        elif kind == "x509":
            first = self._check("x509_primary", v.validate_certificate, cd.get("x509_primary"))
            cd["pem1"] = first.pem() if first else None
            second_text = (cd.get("x509_secondary") or "").strip()
            second = (
                self._check("x509_secondary", v.validate_certificate, second_text)
                if second_text
                else None
            )
            cd["pem2"] = second.pem() if second else None
        elif kind == "symmetricKey" and cd.get("key_mode") == "given":
            cd["key1"] = self._check(
                "primary_key", v.validate_symmetric_key, cd.get("primary_key"), "The primary key"
            )
            cd["key2"] = self._check(
                "secondary_key",
                v.validate_symmetric_key,
                cd.get("secondary_key"),
                "The secondary key",
            )
            if not cd.get("key1") and "primary_key" not in self.errors:
                self.add_error("primary_key", "Enter the primary key, or let DPS generate keys.")

    # -- building the DPS model ---------------------------------------------------------------
    def attestation(self, current: AttestationMechanism | None = None) -> AttestationMechanism:
        """Return the attestation to send; ``current`` (with its secrets) when kept."""
        cd = self.cleaned_data
        if self.existing is not None and cd.get("attestation_keep"):
            if current is None:
                raise ValueError("the current attestation is needed to keep it")
            return copy.deepcopy(current)
        return AttestationMechanism.from_json(self._attestation_body())

    def _attestation_body(self) -> AttestationBody:
        cd = self.cleaned_data
        kind = cd["attestation_type"]
        if kind == "tpm":
            return tpm_attestation(cd["ek"], cd.get("srk"))
        if kind == "symmetricKey":
            if cd.get("key_mode") == "given":
                return symmetric_key_attestation(cd["key1"], cd.get("key2"))
            return symmetric_key_attestation()
        if cd.get("x509_kind") == "ca_references":
            return ca_reference_attestation(cd["ca1"], cd.get("ca2"))
        secondary = certificate_slot(cd["pem2"]) if cd.get("pem2") else None
        return certificate_attestation(
            certificate_slot(cd["pem1"]), secondary, signing=self.is_group
        )

    def _apply_common(self, model: Any, current: AttestationMechanism | None) -> None:
        cd = self.cleaned_data
        model.attestation = self.attestation(current)
        model.capabilities = DeviceCapabilities(iot_edge=bool(cd.get("iot_edge")))
        tags, desired = cd.get("tags"), cd.get("desired")
        model.initial_twin = InitialTwin.of(tags, desired) if (tags or desired) else None
        model.provisioning_status = cd["provisioning_status"]
        pair = REPROVISION.get(cd.get("reprovision_policy") or "")
        model.reprovision_policy = (
            ReprovisionPolicy(update_hub_assignment=pair[0], migrate_device_data=pair[1])
            if pair
            else None
        )
        policy, cad = cd["allocation"]
        model.allocation_policy = policy
        model.custom_allocation_definition = cad
        model.iot_hubs = cd["hubs"] or None
        # Fields the form set are no longer "sent as null" by an earlier writer.
        model.explicit_nulls = frozenset()


class EnrollmentForm(_EnrollmentFieldsForm[IndividualEnrollment]):
    """An individual enrollment: TPM, X.509 client certificates or CA references, symmetric key."""

    registration_id = forms.CharField(
        label="Registration ID",
        max_length=128,
        help_text="Letters, digits and - . _ : (at most 128). For X.509 it is the certificate's CN.",
        widget=_text(),
    )
    device_id = forms.CharField(
        label="IoT Hub device ID",
        required=False,
        help_text="Empty: the registration ID.",
        widget=_text(),
    )
    optional_device_information = forms.CharField(
        label="Optional device information (JSON)", required=False, widget=_textarea(3, mono=True)
    )

    field_order = ["registration_id", "device_id", "attestation_type"]

    @classmethod
    def initial_from(cls, model: Any) -> dict[str, Any]:
        initial = super().initial_from(model)
        initial.update(
            registration_id=model.registration_id,
            device_id=model.device_id or "",
            optional_device_information=_json_text(model.optional_device_information),
        )
        return initial

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if self.existing is not None:
            self.fields["registration_id"].disabled = True

    def clean_registration_id(self) -> str:
        if self.existing is not None:
            return self.existing.registration_id
        return v.validate_registration_id(self.cleaned_data.get("registration_id"))

    def clean_device_id(self) -> str | None:
        return v.validate_device_id(self.cleaned_data.get("device_id"))

    def clean_optional_device_information(self) -> dict[str, Any] | None:
        return v.parse_twin_json(
            self.cleaned_data.get("optional_device_information"), "Device information"
        )

    def build(self, current: AttestationMechanism | None = None) -> IndividualEnrollment:
        """Return the enrollment to PUT (an edit starts from the record that was read)."""
        cd = self.cleaned_data
        if self.existing is not None:
            model = copy.deepcopy(self.existing)
            model.registration_state = None
        else:
            model = IndividualEnrollment(
                registration_id=cd["registration_id"],
                attestation=AttestationMechanism(type="none"),
            )
        self._apply_common(model, current)
        model.device_id = cd.get("device_id")
        model.optional_device_information = cd.get("optional_device_information")
        return model


class EnrollmentGroupForm(_EnrollmentFieldsForm[EnrollmentGroup]):
    """An enrollment group: X.509 signing certificates or CA references, or symmetric key."""

    is_group = True

    enrollment_group_id = forms.CharField(
        label="Enrollment group ID",
        max_length=128,
        help_text="Letters, digits and - . _ : (at most 128).",
        widget=_text(),
    )

    field_order = ["enrollment_group_id", "attestation_type"]

    @classmethod
    def initial_from(cls, model: Any) -> dict[str, Any]:
        initial = super().initial_from(model)
        initial["enrollment_group_id"] = model.enrollment_group_id
        return initial

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if self.existing is not None:
            self.fields["enrollment_group_id"].disabled = True

    def clean_enrollment_group_id(self) -> str:
        if self.existing is not None:
            return self.existing.enrollment_group_id
        return v.validate_group_id(self.cleaned_data.get("enrollment_group_id"))

    def build(self, current: AttestationMechanism | None = None) -> EnrollmentGroup:
        """Return the group to PUT (an edit starts from the record that was read)."""
        cd = self.cleaned_data
        if self.existing is not None:
            model = copy.deepcopy(self.existing)
        else:
            model = EnrollmentGroup(
                enrollment_group_id=cd["enrollment_group_id"],
                attestation=AttestationMechanism(type="none"),
            )
        self._apply_common(model, current)
        return model


class DeviceKeyForm(forms.Form):
    """The registration ID to derive a device key for (symmetric-key groups)."""

    registration_id = forms.CharField(label="Registration ID", max_length=128, widget=_text())

    def clean_registration_id(self) -> str:
        return v.validate_registration_id(self.cleaned_data.get("registration_id"))
