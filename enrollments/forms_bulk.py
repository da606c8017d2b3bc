"""Forms of the bulk pages: field validation only; the services decide the rest."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from enrollments.csv.columns import OPERATIONS
from enrollments.models import JobState, RowPlan, RowStatus

#: At most this many ids in one "delete selected" request (a list page holds far fewer).
MAX_SELECTED = 10_000


def size_text(size: int) -> str:
    """Return a byte count as the limit messages write it: whole MB, or bytes below one MB."""
    mb = 1024 * 1024
    return f"{size // mb:,} MB" if size >= mb and size % mb == 0 else f"{size:,} bytes"


def too_large_message(limit: int) -> str:
    """Return the form error of a file over ``limit`` bytes."""
    return f"The file is larger than the limit of {size_text(limit)}; split it."


class UploadLimit(FileUploadHandler):
    """Stop a request's file uploads once their bytes pass ``limit``, while they stream.

    Installed first for the import page only: the handlers after it (memory, temporary file)
    never receive the chunk that passes the limit, so an oversized file is not written to
    disk whole. The rest of the request body is read and discarded (``connection_reset``
    False), so that the browser receives the page with the form error.
    """

    def __init__(self, request: Any = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file


class ImportForm(forms.Form):
    """Upload a CSV file; rows without an ``operation`` cell get ``default_operation``.

    ``too_large``: the upload was stopped at the limit (:class:`UploadLimit`), so the file is
    missing and the error names the limit.
    """

    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 or UTF-16 with BOM; comma or semicolon separated.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv", "class": "form-control"}),
    )
    default_operation = forms.ChoiceField(
        label="Rows without an operation",
        choices=[(op, op.capitalize()) for op in OPERATIONS],
        initial="upsert",
        required=False,
        widget=forms.Select(attrs={"class": "form-select"}),
    )

    def __init__(self, *args: Any, too_large: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.too_large = too_large
        if too_large:
            self.fields["file"].required = False  # so that the error names the limit

    def clean_default_operation(self) -> str:
        return self.cleaned_data.get("default_operation") or "upsert"

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = settings.BULK_UPLOAD_MAX_BYTES
        if self.too_large or (upload.size is not None and upload.size > limit):
            raise forms.ValidationError(too_large_message(limit))
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.")
        return upload


class ExportForm(forms.Form):
    """Export every individual enrollment; keys only on request (and with the capability)."""

    include_keys = forms.BooleanField(
        required=False,
        label="Include symmetric keys",
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )


def selected_items(data: Any) -> list[tuple[str, str]]:
    """Return ``(registration id, etag)`` of a "delete selected" POST, in order, without repeats.

    Accepts ``selected`` values as the enrollment lists send them (``id|etag``, or ``id``) and
    ``registration_ids`` as repeated values or one text with an id per line (no etag: those
    are deleted whatever their version). A repeated id keeps its first etag.
    """
    raw: list[tuple[str, str]] = []
    for value in data.getlist("selected"):
        rid, _, etag = value.partition("|")
        raw.append((rid.strip(), etag.strip()))
    for value in data.getlist("registration_ids"):
        raw.extend((line.strip(), "") for line in value.splitlines())
    items: dict[str, str] = {}
    for rid, etag in raw:
        if rid and rid not in items:
            items[rid] = etag
    return list(items.items())


class DeleteSelectedForm(forms.Form):
    """Confirm the deletion of a list of individual enrollments."""

    confirm = forms.BooleanField(required=True)

    def __init__(self, *args: Any, ids: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids = ids

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.ids:
            raise forms.ValidationError("Select at least one enrollment to delete.")
        if len(self.ids) > MAX_SELECTED:
            raise forms.ValidationError(
                f"Select at most {MAX_SELECTED:,} enrollments, or import a CSV with "
                "operation delete."
            )
        return data


class RowFilterForm(forms.Form):
    """Filters of a job's per-row table."""

    plan = forms.ChoiceField(
        required=False,
        choices=[("", "Any plan"), *RowPlan.choices],
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any outcome"), *RowStatus.choices],
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    q = forms.CharField(
        required=False,
        max_length=128,
        label="Registration ID",
        widget=forms.TextInput(
            attrs={"class": "form-control form-control-sm", "placeholder": "Registration ID"}
        ),
    )
    problems = forms.BooleanField(
        required=False,
        label="Only problems",
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )


class JobFilterForm(forms.Form):
    """Filters of the jobs list."""

    state = forms.ChoiceField(
        required=False,
        choices=[("", "Any state"), *JobState.choices],
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    everyone = forms.BooleanField(
        required=False,
        label="Everyone's jobs",
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )


#: What "select all N matching" can do with the matching enrollments.
MATCHING_ACTIONS = (
    ("disable", "Disable"),
    ("enable", "Enable"),
    ("delete", "Delete"),
    ("export", "Export"),
)


class SelectMatchingForm(forms.Form):
    """An action on every record a fleet-index list matches, named by the list's query string.

    Never a list of ids: the view runs the query again on the server.
    """

    action = forms.ChoiceField(choices=MATCHING_ACTIONS)
    query_string = forms.CharField(required=False, max_length=4000)
    confirm = forms.BooleanField(required=False)
