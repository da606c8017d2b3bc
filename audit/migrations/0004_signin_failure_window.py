"""Per-address counters of failed sign-ins (audit.throttle)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_keyed_chain_and_guards"),
    ]

    operations = [
        migrations.CreateModel(
            name="SigninFailureWindow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("client_ip", models.CharField(max_length=45, unique=True)),
                ("started", models.DateTimeField()),
                ("written", models.PositiveIntegerField(default=0)),
                ("suppressed", models.PositiveIntegerField(default=0)),
                ("last_at", models.DateTimeField()),
            ],
        ),
    ]
