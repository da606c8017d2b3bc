"""Local emulators of Microsoft Entra ID, Azure Resource Manager and Azure IoT Hub DPS.

The package imports nothing from the portal: it is a stand-alone set of HTTPS services
that the real ``msal``, ``azure-identity`` and Azure SDK clients talk to unchanged except
for configuration. ``python -m emulators serve --state-dir DIR`` starts them all.
"""
