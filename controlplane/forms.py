"""Forms of the Certificates page. File contents are checked in the services, not here."""

from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator

from controlplane.pem import MAX_BYTES

name_validator = RegexValidator(
    r"^[A-Za-z0-9._-]{1,256}$",
    "Use letters, digits, '.', '_' and '-' only (at most 256).",
)


class _FileSizeMixin:
    def clean_file(self) -> bytes:
        upload = self.cleaned_data["file"]  # type: ignore[attr-defined]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError("The file is larger than 64 KiB; a certificate is not.")
        return bytes(upload.read())


class UploadForm(_FileSizeMixin, forms.Form):
    name = forms.CharField(
        max_length=256,
        validators=[name_validator],
        help_text="How DPS and CA references in enrollment groups name this certificate.",
    )
    file = forms.FileField(label="CA certificate (.pem, .cer or .crt)")
    verified = forms.BooleanField(
        required=False,
        label="Set the status to verified on upload",
        help_text="Skips proof of possession: only for a CA whose private key you know you hold.",
    )


class EtagForm(forms.Form):
    etag = forms.CharField(max_length=128)


class VerifyForm(_FileSizeMixin, forms.Form):
    etag = forms.CharField(max_length=128)
    file = forms.FileField(label="Verification certificate (.pem or .cer)")
