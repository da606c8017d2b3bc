"""The arm emulator (see docs/emulators.md)."""
