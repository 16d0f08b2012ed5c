"""The signed HTTP API (DESIGN section 7).

Modules: ``signing`` (RFC 9421 signatures with Ed25519, shared with the client),
``keys`` (the key registry service), ``guard`` (the ASGI layer that verifies every
signature, bounds bodies and keeps HTTP idempotency), ``problems`` (RFC 9457 errors),
``schemas`` (request and response bodies), ``app`` (``create_app(engine)``, the routes)
and ``server`` (``serve(port)``, the entry point of ``settle serve``).

Nothing is imported here, so the client can use ``signing`` without FastAPI.
"""
