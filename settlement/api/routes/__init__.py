"""Route modules of the API, each an ``APIRouter`` that ``settlement.api.app`` includes."""
