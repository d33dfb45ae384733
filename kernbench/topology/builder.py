"""Build the system graph of MODEL.md from a :class:`SystemSpec`.

Floorplan (ours, see docs/floorplan.md): cube ``c`` of a W x H mesh sits at column ``c % W``,
row ``c // W``; x grows east, y grows south. Inside a cube the routers sit at the centres of a
``router_rows`` x ``router_cols`` grid of tiles, so neighbouring routers are one tile pitch
apart. The IO chiplet sits west of the mesh with one UCIe PHY per cube row, joined to the west
port of that row's first cube. UCIe ports attach to one edge router each (see PORT_ROUTER).
"""

from kernbench.hw import HwSpec
from kernbench.topology.graph import Graph, Node, NodeKind
from kernbench.topology.spec import SystemSpec

DIRS = ("N", "E", "S", "W")
OPPOSITE = {"N": "S", "S": "N", "E": "W", "W": "E"}
STEP = {"N": (0, -1), "S": (0, 1), "E": (1, 0), "W": (-1, 0)}


def port_router(direction: str, rows: int, cols: int) -> tuple[int, int]:
    """(row, col) of the edge router a UCIe port attaches to: mid-side, rotationally placed."""
    return {
        "N": (0, (cols - 1) // 2),
        "S": (rows - 1, cols // 2),
        "W": ((rows - 1) // 2, 0),
        "E": (rows // 2, cols - 1),
    }[direction]


def cube_name(sip: int, cube: int) -> str:
    return f"sip{sip}.cube{cube}"


def build_graph(spec: SystemSpec) -> Graph:
    topo, hw = spec.topology, spec.hw
    g = Graph()
    host = g.add_node("host", NodeKind.ENDPOINT)
    if topo.sips > 1:
        switch = g.add_node("switch", NodeKind.FORWARD, hw.switch.overhead_ns)
        g.link(host, switch, hw.host.pcie_bw_gbs, hw.host.pcie_length_mm)
    for sip in range(topo.sips):
        pcie_ep = _build_io(g, spec, sip)
        if topo.sips > 1:
            g.link(switch, pcie_ep, hw.switch.link_bw_gbs, hw.switch.link_length_mm)
        else:
            g.link(host, pcie_ep, hw.host.pcie_bw_gbs, hw.host.pcie_length_mm)
        for cube in range(topo.cubes):
            _build_cube(g, hw, sip, cube)
        _join_cubes(g, spec, sip)
    return g


def _build_io(g: Graph, spec: SystemSpec, sip: int) -> Node:
    io = spec.hw.io
    p = f"sip{sip}.io"
    pcie_ep = g.add_node(f"{p}.pcie_ep", NodeKind.STORE_FORWARD, io.pcie_ep_overhead_ns, sip=sip)
    noc = g.add_node(f"{p}.noc", NodeKind.FORWARD, io.noc_overhead_ns, sip=sip)
    cpu = g.add_node(f"{p}.cpu", NodeKind.ENDPOINT, io.io_cpu_overhead_ns, sip=sip)
    g.link(pcie_ep, noc, io.noc_bw_gbs, io.noc_length_mm)
    g.link(cpu, noc, io.noc_bw_gbs, io.noc_length_mm)
    for row in range(spec.topology.mesh_h):
        phy = g.add_node(f"{p}.ucie{row}", NodeKind.FORWARD, io.ucie_overhead_ns, sip=sip)
        g.link(noc, phy, io.noc_bw_gbs, io.noc_length_mm)
    return pcie_ep


def _build_cube(g: Graph, hw: HwSpec, sip: int, cube: int) -> None:
    c, noc = hw.cube, hw.noc
    p = cube_name(sip, cube)
    rows, cols = c.router_rows, c.router_cols
    pitch_x, pitch_y = c.width_mm / cols, c.height_mm / rows
    routers = [
        g.add_node(
            f"{p}.r{r}c{k}",
            NodeKind.FORWARD,
            noc.router_overhead_ns,
            sip=sip,
            cube=cube,
            router=r * cols + k,
        )
        for r in range(rows)
        for k in range(cols)
    ]
    for r in range(rows):
        for k in range(cols):
            here = routers[r * cols + k]
            if k + 1 < cols:
                g.link(here, routers[r * cols + k + 1], noc.link_bw_gbs, pitch_x)
            if r + 1 < rows:
                g.link(here, routers[(r + 1) * cols + k], noc.link_bw_gbs, pitch_y)
    for pe in range(c.pes):
        loc = {"sip": sip, "cube": cube, "router": pe}
        g.add_node(f"{p}.pe{pe}.cpu", NodeKind.ENDPOINT, hw.pe.cpu_overhead_ns, **loc)
        g.add_node(f"{p}.pe{pe}.sched", NodeKind.ENDPOINT, hw.pe.scheduler_overhead_ns, **loc)
        dma = g.add_node(f"{p}.pe{pe}.dma", NodeKind.ENDPOINT, 0.0, **loc)
        ctrl = g.add_node(f"{p}.hbm_ctrl.pe{pe}", NodeKind.ENDPOINT, hw.hbm.ctrl_overhead_ns, **loc)
        g.link(dma, routers[pe], noc.endpoint_bw_gbs, noc.endpoint_length_mm)
        g.link(ctrl, routers[pe], noc.endpoint_bw_gbs, noc.endpoint_length_mm)
    loc0 = {"sip": sip, "cube": cube, "router": 0}
    m_cpu = g.add_node(f"{p}.m_cpu", NodeKind.ENDPOINT, c.m_cpu_overhead_ns, **loc0)
    sram = g.add_node(f"{p}.sram", NodeKind.ENDPOINT, 0.0, **loc0)
    g.link(m_cpu, routers[0], noc.endpoint_bw_gbs, noc.endpoint_length_mm)
    g.link(sram, routers[0], c.sram_bw_gbs, noc.endpoint_length_mm)


def _port_node(g: Graph, hw: HwSpec, sip: int, cube: int, d: str) -> Node:
    """The UCIe port ``d`` of a cube, created with its link to its edge router on first use."""
    name = f"{cube_name(sip, cube)}.ucie.{d}"
    if g.has_node(name):
        return g.node(name)
    c = hw.cube
    r, k = port_router(d, c.router_rows, c.router_cols)
    rid = r * c.router_cols + k
    port = g.add_node(
        name, NodeKind.FORWARD, hw.ucie.port_overhead_ns, sip=sip, cube=cube, router=rid
    )
    pitch_x, pitch_y = c.width_mm / c.router_cols, c.height_mm / c.router_rows
    to_edge = {
        "N": (r + 0.5) * pitch_y,
        "S": (c.router_rows - r - 0.5) * pitch_y,
        "W": (k + 0.5) * pitch_x,
        "E": (c.router_cols - k - 0.5) * pitch_x,
    }[d]
    g.link(port, g.node(f"{cube_name(sip, cube)}.r{r}c{k}"), hw.ucie.port_link_bw_gbs, to_edge)
    return port


def _crossing(g: Graph, hw: HwSpec, a: Node, b: Node) -> None:
    """The parallel UCIe connections between two ports, each named after its sending port."""
    u = hw.ucie
    for k in range(u.connections):
        g.add_edge(a, b, u.conn_bw_gbs, u.crossing_length_mm, name=f"{a.name}.conn{k}")
        g.add_edge(b, a, u.conn_bw_gbs, u.crossing_length_mm, name=f"{b.name}.conn{k}")


def _join_cubes(g: Graph, spec: SystemSpec, sip: int) -> None:
    w, h, hw = spec.topology.mesh_w, spec.topology.mesh_h, spec.hw
    for y in range(h):
        for x in range(w):
            cube = y * w + x
            if x + 1 < w:
                a = _port_node(g, hw, sip, cube, "E")
                b = _port_node(g, hw, sip, cube + 1, "W")
                _crossing(g, hw, a, b)
            if y + 1 < h:
                a = _port_node(g, hw, sip, cube, "S")
                b = _port_node(g, hw, sip, cube + w, "N")
                _crossing(g, hw, a, b)
        west = _port_node(g, hw, sip, y * w, "W")
        _crossing(g, hw, g.node(f"sip{sip}.io.ucie{y}"), west)
