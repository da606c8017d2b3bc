"""Entra ID sign-in, tokens on behalf of the user, and Azure RBAC capabilities."""
