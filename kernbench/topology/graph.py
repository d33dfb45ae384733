"""The system graph: named nodes with a fixed overhead, directed edges with bandwidth and length."""

from dataclasses import dataclass
from enum import Enum

from kernbench.core.errors import RouteError


class NodeKind(Enum):
    FORWARD = "forward"  # wormhole: overhead on the head flit, flits pass on without waiting
    STORE_FORWARD = "store_forward"  # releases a message only after its tail has arrived
    ENDPOINT = "endpoint"  # a source or sink of transfers (PE DMA, HBM controller, host, ...)


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    name: str
    kind: NodeKind
    overhead_ns: float
    sip: int = -1  # -1: outside every SIP (host, switch)
    cube: int = -1  # -1: not in a cube (IO chiplet, host, switch)
    router: int = -1  # router index the node sits on (cube nodes only)


@dataclass(frozen=True, slots=True)
class Edge:
    id: int
    name: str
    src: int
    dst: int
    bw_gbs: float
    length_mm: float


class Graph:
    """Nodes and directed edges; parallel edges (UCIe connections) are allowed."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self._by_name: dict[str, Node] = {}
        self._edge_by_name: dict[str, Edge] = {}
        self._between: dict[tuple[int, int], list[int]] = {}

    def add_node(self, name: str, kind: NodeKind, overhead_ns: float = 0.0, **loc: int) -> Node:
        if name in self._by_name:
            raise ValueError(f"duplicate node name {name!r}")
        node = Node(len(self.nodes), name, kind, overhead_ns, **loc)
        self.nodes.append(node)
        self._by_name[name] = node
        return node

    def add_edge(
        self, src: Node, dst: Node, bw_gbs: float, length_mm: float, name: str | None = None
    ) -> Edge:
        name = name or f"{src.name}->{dst.name}"
        if name in self._edge_by_name:
            raise ValueError(f"duplicate edge name {name!r}")
        edge = Edge(len(self.edges), name, src.id, dst.id, bw_gbs, length_mm)
        self.edges.append(edge)
        self._edge_by_name[name] = edge
        self._between.setdefault((src.id, dst.id), []).append(edge.id)
        return edge

    def link(self, a: Node, b: Node, bw_gbs: float, length_mm: float) -> None:
        """Both directions between ``a`` and ``b`` with the same bandwidth and length."""
        self.add_edge(a, b, bw_gbs, length_mm)
        self.add_edge(b, a, bw_gbs, length_mm)

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise RouteError(f"no component named {name!r} in this topology") from None

    def edge(self, name: str) -> Edge:
        try:
            return self._edge_by_name[name]
        except KeyError:
            raise RouteError(f"no link named {name!r} in this topology") from None

    def has_node(self, name: str) -> bool:
        return name in self._by_name

    def edges_between(self, src: int, dst: int) -> list[int]:
        try:
            return self._between[(src, dst)]
        except KeyError:
            raise RouteError(
                f"no link from {self.nodes[src].name!r} to {self.nodes[dst].name!r}"
            ) from None
