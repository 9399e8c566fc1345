"""Shared foundations every part may import: the config base, settings, errors, file helpers.

Nothing here imports the four parts (platform, training, registry, serving).
"""
