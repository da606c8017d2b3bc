"""Point ``BulkJob.instance`` at ``instances.DpsInstance``: state only, the column is unchanged."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("enrollments", "0005_bulkjob_pause_reason_service_unavailable"),
        ("instances", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="bulkjob",
                    name="instance",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="bulk_jobs",
                        to="instances.dpsinstance",
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
