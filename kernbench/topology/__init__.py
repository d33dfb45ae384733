"""Config -> graph of components and edges; routing; address decoding."""

from kernbench.topology.address import AddressMap, HbmLocation
from kernbench.topology.graph import Edge, Graph, Node, NodeKind
from kernbench.topology.spec import SystemSpec, TopologySpec
from kernbench.topology.topology import Route, Topology

__all__ = [
    "AddressMap",
    "Edge",
    "Graph",
    "HbmLocation",
    "Node",
    "NodeKind",
    "Route",
    "SystemSpec",
    "Topology",
    "TopologySpec",
]
