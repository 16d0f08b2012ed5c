"""Use cases: each owns its database transaction and translates lower errors once."""
