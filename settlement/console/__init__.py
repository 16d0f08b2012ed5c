"""The web review console for compliance officers and admins (``/console``).

``install_console(app, engine)`` mounts it on a FastAPI application; accounts are made
with ``settle officers``. See ``settlement.console.web`` for what each page does.
"""

from settlement.console.web import install_console

__all__ = ["install_console"]
