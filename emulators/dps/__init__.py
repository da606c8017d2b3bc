"""The DPS service and device registration emulator (see docs/emulators.md)."""
