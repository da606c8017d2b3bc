"""The append-only, tamper-evident audit log of everything done through the portal."""
