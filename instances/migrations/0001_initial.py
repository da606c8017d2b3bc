"""Take ``DpsInstance`` over from authn without touching data.

The table stays ``authn_dpsinstance`` (``db_table``): this migration only tells Django's
state that the model now belongs here, and moves its content type (and so the permissions
attached to it) to this app. authn 0003 drops the model from authn's state afterwards.
"""

import django.core.validators
from django.db import migrations, models


def content_type_move(apps, schema_editor, *, src: str, dst: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    types = content_type.objects.using(schema_editor.connection.alias)
    if types.filter(app_label=dst, model="dpsinstance").exists():
        return  # already made by a migrate run that did not know the old one
    types.filter(app_label=src, model="dpsinstance").update(app_label=dst)


def forwards(apps, schema_editor) -> None:
    content_type_move(apps, schema_editor, src="authn", dst="instances")


def backwards(apps, schema_editor) -> None:
    content_type_move(apps, schema_editor, src="instances", dst="authn")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("authn", "0002_usertokencache_version"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DpsInstance",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "name",
                            models.CharField(
                                help_text="The DPS resource name, e.g. dps-fleet-prod.",
                                max_length=64,
                                unique=True,
                                validators=[
                                    django.core.validators.RegexValidator(
                                        "^[A-Za-z0-9][A-Za-z0-9-]{1,62}[A-Za-z0-9]$"
                                    )
                                ],
                            ),
                        ),
                        (
                            "host",
                            models.CharField(
                                help_text="Host (and port) of the service API, e.g. "
                                "dps-fleet-prod.azure-devices-provisioning.net.",
                                max_length=255,
                                verbose_name="service host",
                            ),
                        ),
                        (
                            "resource_id",
                            models.CharField(
                                max_length=512,
                                validators=[
                                    django.core.validators.RegexValidator(
                                        "^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                        "Microsoft\\.Devices/provisioningServices/[^/]+$",
                                        "Not a DPS resource id.",
                                    )
                                ],
                                verbose_name="ARM resource id",
                            ),
                        ),
                        ("enabled", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "verbose_name": "DPS instance",
                        "ordering": ("name",),
                        "db_table": "authn_dpsinstance",
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards, elidable=True),
    ]
