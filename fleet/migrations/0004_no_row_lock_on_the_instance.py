"""Index rows name their instance without a database constraint (the write cost of a pass).

A foreign key constraint makes PostgreSQL check every row written, and the check locks the
instance's row (SELECT … FOR KEY SHARE): a third of a first pass's cost. Django still deletes
an instance's index rows with the instance (on_delete=CASCADE is the ORM's).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0003_leaner_record_indexes"),
        ("instances", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="indexedrecord",
            name="instance",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="fleet_records",
                to="instances.dpsinstance",
            ),
        ),
        migrations.AlterField(
            model_name="indexedregistration",
            name="instance",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="fleet_registrations",
                to="instances.dpsinstance",
            ),
        ),
    ]
