"""Pages of individual enrollments."""

from __future__ import annotations

from authn.permissions import Capability as C
from enrollments import selectors, services
from enrollments.forms import EnrollmentForm
from enrollments.views import generic, kinds

ENROLLMENTS = kinds.RecordKind(
    name="enrollment",
    is_group=False,
    noun="enrollment",
    read=C.ENROLLMENTS_READ,
    write=C.ENROLLMENTS_WRITE,
    delete=C.ENROLLMENTS_DELETE,
    record=services.ENROLLMENTS,
    form_class=EnrollmentForm,
    get=lambda client, key: selectors.enrollment_get(client=client, registration_id=key),
    page=lambda client, size, ct: selectors.enrollment_page(
        client=client, page_size=size, continuation=ct
    ),
)


class EnrollmentListView(generic.RecordListView):
    """List individual enrollments one page at a time."""

    kind = ENROLLMENTS


class EnrollmentDetailView(generic.RecordDetailView):
    """Show every field of an individual enrollment, its registration state too."""

    kind = ENROLLMENTS


class EnrollmentCreateView(generic.RecordCreateView):
    """Create an individual enrollment."""

    kind = ENROLLMENTS


class EnrollmentEditView(generic.RecordEditView):
    """Edit an individual enrollment with the ETag the user saw."""

    kind = ENROLLMENTS


class EnrollmentDeleteView(generic.RecordDeleteView):
    """Confirm, then delete an individual enrollment with its ETag."""

    kind = ENROLLMENTS


class EnrollmentStatusView(generic.RecordStatusView):
    """Enable or disable an individual enrollment inline."""

    kind = ENROLLMENTS


class EnrollmentRevealView(generic.RecordRevealView):
    """Show the keys of an individual enrollment (audited)."""

    kind = ENROLLMENTS


enrollment_list = EnrollmentListView.as_view()
enrollment_detail = EnrollmentDetailView.as_view()
enrollment_create = EnrollmentCreateView.as_view()
enrollment_edit = EnrollmentEditView.as_view()
enrollment_delete = EnrollmentDeleteView.as_view()
enrollment_status = EnrollmentStatusView.as_view()
enrollment_reveal = EnrollmentRevealView.as_view()
