"""The control plane of a DPS instance, through ARM as the user: CA certificates, linked hubs."""
