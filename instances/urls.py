"""URLs of the DPS instance registry page.

Included by ``authn.urls`` under ``/auth/instances/`` without a namespace of their own, so
the names stay ``authn:instance_list`` and ``authn:instance_toggle``.
"""

from __future__ import annotations

from django.urls import path

from instances import views

urlpatterns = [
    path("", views.instance_list, name="instance_list"),
    path("<str:name>/toggle/", views.instance_toggle, name="instance_toggle"),
]
