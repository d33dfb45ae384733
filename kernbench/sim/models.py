"""Choosing a transfer model by name (``sim.model``)."""

from kernbench.sim.context import Sim
from kernbench.sim.flit import FlitModel
from kernbench.sim.fluid import FluidModel
from kernbench.sim.spec import MODELS
from kernbench.sim.transfer import Fabric, TransferModel


def make_model(name: str, sim: Sim, fabric: Fabric, memo: dict | None = None) -> TransferModel:
    """The model ``name`` names. ``memo`` is a cache a model may share between the systems of
    one topology (the fluid model keeps its closed-form plans there)."""
    if name == "flit":
        return FlitModel(sim, fabric)
    if name == "fluid":
        return FluidModel(sim, fabric, memo)
    raise ValueError(f"transfer model must be one of {', '.join(MODELS)}, got {name!r}")
