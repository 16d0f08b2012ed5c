"""The signed HTTP API (DESIGN section 7).

Modules: ``app`` (``create_app(engine)``, the application factory), ``routes`` (one
module per resource: commitments, review, audit, settlements, parties, operations),
``deps`` (what the routes share: engine, actor, roles, problem responses), ``guard``
(the ASGI layer that verifies every signature with ``settlement.signing``, bounds bodies
and keeps HTTP idempotency), ``problems`` (RFC 9457 errors and their handlers),
``openapi`` (the served document), ``schemas`` (request and response bodies), ``reads``
(the API's read models) and ``server`` (``serve(port)``, the entry point of ``settle
serve``).

Nothing is imported here: a module of the package loads only what it uses.
"""
