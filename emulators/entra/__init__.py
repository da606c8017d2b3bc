"""The entra emulator (see docs/emulators.md)."""
