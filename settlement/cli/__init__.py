"""`settle`, the operator's command line: one module per command group (``main`` wires them)."""
