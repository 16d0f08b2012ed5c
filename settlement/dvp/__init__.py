"""Delivery versus payment: instruction checks, the commit protocol's decisions, reliable
submission, and the coordinator that drives a settlement with them."""

from settlement.dvp.coordinator import DvpCoordinator, DvpPolicy, Progress, StepResult
from settlement.dvp.instructions import LegInstruction

__all__ = ["DvpCoordinator", "DvpPolicy", "LegInstruction", "Progress", "StepResult"]
