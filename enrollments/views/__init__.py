"""The portal's pages of one DPS instance, by what they serve.

``generic`` holds the record views (list, detail, create, edit, delete, status, reveal) that
``enrollments`` and ``groups`` configure with a ``kinds.RecordKind``; ``registrations`` and ``jobs`` (bulk pages) are
function views; ``errors`` turns DPS failures into pages.
"""

from enrollments.views.enrollments import ENROLLMENTS
from enrollments.views.groups import GROUPS
from enrollments.views.kinds import key_urls

__all__ = ["ENROLLMENTS", "GROUPS", "key_urls"]
