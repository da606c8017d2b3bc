"""Drop ``DpsInstance`` from authn's state: the instances app owns it (and its table) now."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("authn", "0002_usertokencache_version"),
        ("instances", "0001_initial"),
        ("enrollments", "0006_bulkjob_instance_from_instances_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="DpsInstance")],
            database_operations=[],
        ),
    ]
