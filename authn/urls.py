"""URLs of sign-in, sign-out, permissions and the DPS instance registry (under /auth/)."""

from __future__ import annotations

from django.urls import include, path

from authn import views

# Every path ends in a slash (slash-less forms answer 301) except the sign-in callback, whose
# address is registered in Entra ID as the redirect URI.
app_name = "authn"
urlpatterns = [
    path("login/", views.login, name="login"),
    path("callback", views.callback, name="callback"),
    path("logout/", views.logout, name="logout"),
    path("permissions/refresh/", views.permissions_refresh, name="permissions_refresh"),
    path("instances/", include("instances.urls")),
]
