"""The Dockerfile's static build, reproduced: pages render with DEBUG off and the manifest storage.

Docker is not needed: the test runs the Dockerfile's step (``manage.py collectstatic`` with the
production settings, no ``DJANGO_DEBUG``) into a temporary STATIC_ROOT, then renders pages with
``DEBUG=False`` and the manifest storage over that STATIC_ROOT, as gunicorn in the image does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"


def _dockerfile_collectstatic_env() -> dict[str, str]:
    """Return the environment of the Dockerfile's collectstatic RUN line, from the Dockerfile."""
    text = DOCKERFILE.read_text()
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if not ln.startswith("#")]
    line = next((ln for ln in lines if "manage.py collectstatic" in ln), "")
    assert line, "the Dockerfile has no collectstatic step"
    command = line.split("&&")[-1] if "&&" in line else line
    assert "manage.py collectstatic" in command, command
    assigned = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", command.split("python")[0]))
    return assigned


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run collectstatic as the Dockerfile does, into a fresh STATIC_ROOT; return that root."""
    root = tmp_path_factory.mktemp("staticfiles")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ENTRA_", "EMULATOR_", "AZURE_", "ARM_", "PORTAL_"))
    }
    env.update(_dockerfile_collectstatic_env())
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", STATIC_ROOT=str(root))
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_dockerfile_collects_static_without_debug() -> None:
    """The image's collectstatic runs with production settings: no DJANGO_DEBUG on its line."""
    env = _dockerfile_collectstatic_env()
    assert "DJANGO_DEBUG" not in env, env
    assert "ENV DJANGO_SECRET_KEY" not in DOCKERFILE.read_text()  # never baked into the image


def test_collectstatic_writes_the_manifest_with_vendored_assets(collected: Path) -> None:
    manifest = json.loads((collected / "staticfiles.json").read_text())
    paths = manifest["paths"]
    for name in (
        "vendor/bootstrap/bootstrap.min.css",
        "vendor/bootstrap/bootstrap.bundle.min.js",
        "vendor/htmx/htmx.min.js",
        "portal/portal.css",
    ):
        assert name in paths, name
        assert (collected / paths[name]).is_file()


def _production_static(settings: Any, root: Path) -> None:
    settings.DEBUG = False
    settings.STATIC_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = False
    settings.WHITENOISE_AUTOREFRESH = False


@pytest.mark.parametrize(
    "path", ["/", f"/dps/{INSTANCE}/enrollments/", f"/dps/{INSTANCE}/enrollments/new/"]
)
def test_pages_render_with_debug_off_and_the_manifest(
    collected: Path, signed_in: Any, settings: Any, path: str
) -> None:
    """The home and enrollment pages link the hashed names the manifest lists."""
    client = signed_in("dana")  # signed in before the storage switch: sign-in renders too
    _production_static(settings, collected)
    response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
    html = response.content.decode()
    for name in ("vendor/bootstrap/bootstrap.min.css", "portal/portal.css"):
        assert f"/static/{manifest[name]}" in html, name


def test_image_and_make_copy_every_source_map_the_vendored_files_name() -> None:
    """The manifest storage follows sourceMappingURL; a map left behind fails the image build."""
    vendored = sorted((ROOT / "static" / "vendor").rglob("*.min.*"))
    named = {
        m
        for f in vendored
        if not f.name.endswith(".map")
        for m in re.findall(r"sourceMappingURL=([\w.-]+)", f.read_text(errors="replace"))
    }
    assert named, "no vendored file names a source map: run make static"
    dockerfile, makefile = DOCKERFILE.read_text(), (ROOT / "Makefile").read_text()
    for name in named:
        assert name in dockerfile, name
        assert name.removesuffix(".map") + "{,.map}" in makefile or name in makefile, name
