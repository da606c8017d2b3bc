"""Machinery shared by the three emulators: CA, tenant, keys, RBAC, servers."""
