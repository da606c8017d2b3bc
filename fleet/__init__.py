"""The fleet index: a searchable copy of every DPS instance's records, kept by a sync pass."""
