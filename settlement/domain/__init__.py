"""The engine's domain: the commitment state machine, its values and its errors; no I/O."""
