"""A built system: its graph, address map and deterministic routes.

Routing (ours, see docs/floorplan.md): XY everywhere. Inside a cube, columns first, then rows.
Across the cube mesh of a SIP, east-west first, then north-south, leaving and entering each
cube through the port of that direction. Traffic between the IO chiplet and a cube uses the
PHY of the cube's row and runs east-west along it. Traffic between SIPs, or between the host
and a SIP, passes the SIPs' pcie_ep (and the fabric switch when there is one). Among parallel
UCIe connections a route takes connection ``key % connections``; the key is the local index of
the PE at the source end (the destination's when the source is outside the cubes), and a
response uses the key of its request.
"""

from dataclasses import dataclass

from kernbench.core.errors import RouteError
from kernbench.topology.address import AddressMap
from kernbench.topology.builder import OPPOSITE, STEP, build_graph, cube_name, port_router
from kernbench.topology.graph import Graph, Node
from kernbench.topology.spec import SystemSpec


@dataclass(frozen=True, slots=True)
class Route:
    """A path as node ids and the edge ids between them (``len(edges) == len(nodes) - 1``)."""

    nodes: tuple[int, ...]
    edges: tuple[int, ...]


class Topology:
    def __init__(self, spec: SystemSpec):
        self.spec = spec
        self.graph: Graph = build_graph(spec)
        t, hw = spec.topology, spec.hw
        self.address = AddressMap(t.sips, t.cubes, hw.cube.pes, hw.hbm.slice_bytes)
        self._routes: dict[tuple[int, int, int], Route] = {}
        # Caches that systems built on this topology share (e.g. the fluid model's plans).
        self.memo: dict[str, dict] = {}

    # -- names -----------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        return self.graph.node(name)

    def pe_dma(self, sip: int, cube: int, pe: int) -> Node:
        return self.graph.node(f"{cube_name(sip, cube)}.pe{pe}.dma")

    def hbm_ctrl(self, sip: int, cube: int, pe: int) -> Node:
        return self.graph.node(f"{cube_name(sip, cube)}.hbm_ctrl.pe{pe}")

    @property
    def pe_count(self) -> int:
        t = self.spec.topology
        return t.sips * t.cubes * self.spec.hw.cube.pes

    # -- routing ---------------------------------------------------------------------------
    @staticmethod
    def flow_key(src: Node, dst: Node) -> int:
        """The key a request from ``src`` to ``dst`` uses to pick UCIe connections."""
        return src.router if src.cube >= 0 else max(dst.router, 0)

    def route(self, src: Node, dst: Node, key: int | None = None) -> Route:
        """The deterministic route from ``src`` to ``dst``; ``key`` picks UCIe connections."""
        if key is None:
            key = self.flow_key(src, dst)
        cache_key = (src.id, dst.id, key)
        route = self._routes.get(cache_key)
        if route is None:
            if src.id == dst.id:
                raise RouteError(f"route from {src.name!r} to itself")
            nodes = self._node_path(src, dst)
            edges = []
            for a, b in zip(nodes, nodes[1:], strict=False):
                parallel = self.graph.edges_between(a, b)
                edges.append(parallel[key % len(parallel)])
            route = self._routes[cache_key] = Route(tuple(nodes), tuple(edges))
        return route

    def _node_path(self, src: Node, dst: Node) -> list[int]:
        g = self.graph
        path = [src.id]
        # Climb from the source to the level where source and destination meet.
        same_sip_cubes = src.cube >= 0 and dst.cube >= 0 and src.sip == dst.sip
        if same_sip_cubes:
            path += self._mesh_walk(src.sip, src.cube, src.router, dst.cube, dst.router)
            path.append(dst.id)
            return _dedupe(path)
        if src.cube >= 0:
            path += self._mesh_walk_to_io(src.sip, src.cube, src.router)
        elif src.sip >= 0 and src.name != f"sip{src.sip}.io.noc":
            path.append(g.node(f"sip{src.sip}.io.noc").id)
        # Now at the source SIP's io.noc, or at the host / switch.
        if src.sip >= 0 and src.sip != dst.sip:
            path.append(g.node(f"sip{src.sip}.io.pcie_ep").id)
            if self.spec.topology.sips > 1 and src.name != "switch":
                path.append(g.node("switch").id)
        elif src.sip < 0 and dst.sip >= 0 and src.name == "host" and self.spec.topology.sips > 1:
            path.append(g.node("switch").id)
        # Descend into the destination SIP.
        if dst.sip >= 0:
            if src.sip != dst.sip:
                path.append(g.node(f"sip{dst.sip}.io.pcie_ep").id)
                path.append(g.node(f"sip{dst.sip}.io.noc").id)
            if dst.cube >= 0:
                path += self._io_to_mesh(dst.sip, dst.cube, dst.router)
        elif dst.name == "host" and self.spec.topology.sips > 1 and path[-1] != g.node("switch").id:
            path.append(g.node("switch").id)
        path.append(dst.id)
        return _dedupe(path)

    def _router(self, sip: int, cube: int, rid: int) -> int:
        cols = self.spec.hw.cube.router_cols
        return self.graph.node(f"{cube_name(sip, cube)}.r{rid // cols}c{rid % cols}").id

    def _intra(self, sip: int, cube: int, r_from: int, r_to: int) -> list[int]:
        """Routers from ``r_from`` to ``r_to`` inclusive, columns first, then rows."""
        cols = self.spec.hw.cube.router_cols
        r, k = divmod(r_from, cols)
        r2, k2 = divmod(r_to, cols)
        out = [self._router(sip, cube, r_from)]
        while k != k2:
            k += 1 if k2 > k else -1
            out.append(self._router(sip, cube, r * cols + k))
        while r != r2:
            r += 1 if r2 > r else -1
            out.append(self._router(sip, cube, r * cols + k))
        return out

    def _port_rid(self, d: str) -> int:
        c = self.spec.hw.cube
        r, k = port_router(d, c.router_rows, c.router_cols)
        return r * c.router_cols + k

    def _port(self, sip: int, cube: int, d: str) -> int:
        return self.graph.node(f"{cube_name(sip, cube)}.ucie.{d}").id

    def _mesh_walk(self, sip: int, cube: int, rid: int, cube2: int, rid2: int) -> list[int]:
        w = self.spec.topology.mesh_w
        x, y = cube % w, cube // w
        x2, y2 = cube2 % w, cube2 // w
        out: list[int] = []
        while (x, y) != (x2, y2):
            d = ("E" if x2 > x else "W") if x != x2 else ("S" if y2 > y else "N")
            out += self._intra(sip, cube, rid, self._port_rid(d))
            out.append(self._port(sip, cube, d))
            dx, dy = STEP[d]
            x, y = x + dx, y + dy
            cube = y * w + x
            out.append(self._port(sip, cube, OPPOSITE[d]))
            rid = self._port_rid(OPPOSITE[d])
        out += self._intra(sip, cube, rid, rid2)
        return out

    def _mesh_walk_to_io(self, sip: int, cube: int, rid: int) -> list[int]:
        w = self.spec.topology.mesh_w
        row = cube // w
        out = self._mesh_walk(sip, cube, rid, row * w, self._port_rid("W"))
        out.append(self._port(sip, row * w, "W"))
        out.append(self.graph.node(f"sip{sip}.io.ucie{row}").id)
        out.append(self.graph.node(f"sip{sip}.io.noc").id)
        return out

    def _io_to_mesh(self, sip: int, cube: int, rid: int) -> list[int]:
        w = self.spec.topology.mesh_w
        row = cube // w
        out = [self.graph.node(f"sip{sip}.io.ucie{row}").id, self._port(sip, row * w, "W")]
        out += self._mesh_walk(sip, row * w, self._port_rid("W"), cube, rid)
        return out


def _dedupe(path: list[int]) -> list[int]:
    """Drop consecutive repeats (a walk that starts or ends on the router it is already at)."""
    out = [path[0]]
    for n in path[1:]:
        if n != out[-1]:
            out.append(n)
    return out
