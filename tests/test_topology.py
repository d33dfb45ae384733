"""The built graph (MODEL.md §1 names and counts) and deterministic XY routing."""

import re

import pytest

from kernbench.core.errors import RouteError
from kernbench.topology import Graph, NodeKind, Route, Topology

PES = 8
ROUTER_COLS = 4
CONNECTIONS = 4


def node_names(topo: Topology, route: Route) -> list[str]:
    return [topo.graph.nodes[n].name for n in route.nodes]


def edge_names(topo: Topology, route: Route) -> list[str]:
    return [topo.graph.edges[e].name for e in route.edges]


def cube_of(name: str) -> int | None:
    m = re.match(r"sip\d+\.cube(\d+)\.", name)
    return int(m.group(1)) if m else None


def router_rc(name: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"sip\d+\.cube\d+\.r(\d+)c(\d+)", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def all_pe_routes(topo: Topology, src_sip: int = 0, dst_sip: int = 0):
    """Every PE DMA -> HBM controller route between two SIPs, and every response route."""
    cubes = topo.spec.topology.cubes
    for s_cube in range(cubes):
        for d_cube in range(cubes):
            for s_pe in range(PES):
                for d_pe in range(PES):
                    src = topo.pe_dma(src_sip, s_cube, s_pe)
                    dst = topo.hbm_ctrl(dst_sip, d_cube, d_pe)
                    yield topo.route(src, dst)
                    yield topo.route(dst, src)


def assert_contiguous_and_simple(topo: Topology, route: Route) -> None:
    edges = [topo.graph.edges[e] for e in route.edges]
    assert len(edges) == len(route.nodes) - 1
    for i, edge in enumerate(edges):
        assert (edge.src, edge.dst) == (route.nodes[i], route.nodes[i + 1])
    assert len(set(route.nodes)) == len(route.nodes), node_names(topo, route)


# -- names and counts -------------------------------------------------------------------------


def test_model_md_names_exist(topo4x4):
    g = topo4x4.graph
    assert topo4x4.node("sip0.cube5.pe3.dma").kind is NodeKind.ENDPOINT
    assert topo4x4.node("sip0.cube5.hbm_ctrl.pe3").kind is NodeKind.ENDPOINT
    assert topo4x4.node("sip0.cube5.r1c2").kind is NodeKind.FORWARD
    assert topo4x4.node("sip0.io.pcie_ep").kind is NodeKind.STORE_FORWARD
    # A UCIe connection is an edge, not a node: cube 5 (x=1, y=1) sends east to cube 6.
    assert not g.has_node("sip0.cube5.ucie.E.conn2")
    conn = g.edge("sip0.cube5.ucie.E.conn2")
    assert g.nodes[conn.src].name == "sip0.cube5.ucie.E"
    assert g.nodes[conn.dst].name == "sip0.cube6.ucie.W"
    assert conn.bw_gbs == 128.0


def test_helpers_name_the_same_nodes(topo4x4):
    assert topo4x4.pe_dma(0, 5, 3).name == "sip0.cube5.pe3.dma"
    assert topo4x4.hbm_ctrl(0, 5, 3).name == "sip0.cube5.hbm_ctrl.pe3"
    # PE i and its controller sit on router i (row-major over 4 columns).
    assert topo4x4.pe_dma(0, 5, 6).router == 6
    assert topo4x4.hbm_ctrl(0, 5, 6).router == 6


@pytest.mark.parametrize(("w", "h", "sips"), [(2, 2, 1), (4, 4, 1), (8, 8, 1), (2, 2, 2)], ids=str)
def test_counts(make_topology, w, h, sips):
    topo = make_topology(w, h, sips)
    names = [n.name for n in topo.graph.nodes]
    assert len(set(names)) == len(names)
    cubes = {m.group(1) for n in names if (m := re.match(r"(sip\d+\.cube\d+)\.", n))}
    pes = [n for n in names if re.fullmatch(r"sip\d+\.cube\d+\.pe\d+\.dma", n)]
    ctrls = [n for n in names if re.fullmatch(r"sip\d+\.cube\d+\.hbm_ctrl\.pe\d+", n)]
    routers = [n for n in names if router_rc(n)]
    pcie = [n for n in names if n.endswith(".io.pcie_ep")]
    assert len(cubes) == sips * w * h
    assert len(pes) == len(ctrls) == sips * w * h * PES == topo.pe_count
    assert len(routers) == sips * w * h * 2 * 4
    assert len(pcie) == sips
    assert topo.graph.has_node("switch") == (sips > 1)
    # Neighbour crossings plus one IO PHY crossing per row, both directions, 4 connections each.
    crossings = (w - 1) * h + w * (h - 1) + h
    conns = [e for e in topo.graph.edges if re.search(r"\.conn\d+$", e.name)]
    assert len(conns) == sips * crossings * 2 * CONNECTIONS


def test_duplicate_node_name_raises():
    g = Graph()
    g.add_node("sip0.cube0.pe0.dma", NodeKind.ENDPOINT)
    with pytest.raises(ValueError, match=r"duplicate node name 'sip0\.cube0\.pe0\.dma'"):
        g.add_node("sip0.cube0.pe0.dma", NodeKind.FORWARD)


def test_duplicate_edge_name_raises():
    g = Graph()
    a = g.add_node("a", NodeKind.ENDPOINT)
    b = g.add_node("b", NodeKind.ENDPOINT)
    g.add_edge(a, b, 1.0, 1.0, name="a.conn0")
    with pytest.raises(ValueError, match="duplicate edge name 'a.conn0'"):
        g.add_edge(a, b, 1.0, 1.0, name="a.conn0")


def test_unknown_name_is_a_route_error(topo2x2):
    with pytest.raises(RouteError, match="sip0.cube9.pe0.dma"):
        topo2x2.node("sip0.cube9.pe0.dma")


# -- routes: shape ----------------------------------------------------------------------------


def test_routes_are_contiguous_and_simple(topo2x2, topo2sip):
    for route in all_pe_routes(topo2x2):
        assert_contiguous_and_simple(topo2x2, route)
    for route in all_pe_routes(topo2sip, src_sip=0, dst_sip=1):
        assert_contiguous_and_simple(topo2sip, route)
    for topo in (topo2x2, topo2sip):
        host = topo.node("host")
        for sip in range(topo.spec.topology.sips):
            for cube in range(4):
                for pe in (0, 5):
                    ctrl = topo.hbm_ctrl(sip, cube, pe)
                    assert_contiguous_and_simple(topo, topo.route(host, ctrl))
                    assert_contiguous_and_simple(topo, topo.route(ctrl, host))


def test_routes_are_deterministic_across_builds(make_topology):
    a, b = make_topology(2, 2, sips=2), make_topology(2, 2, sips=2)
    for s_name, d_name in [
        ("sip0.cube3.pe7.dma", "sip1.cube2.hbm_ctrl.pe1"),
        ("sip1.cube0.hbm_ctrl.pe4", "sip0.cube1.pe2.dma"),
        ("host", "sip1.cube3.hbm_ctrl.pe5"),
        ("sip0.cube1.pe6.dma", "sip0.cube2.hbm_ctrl.pe3"),
    ]:
        ra = a.route(a.node(s_name), a.node(d_name))
        rb = b.route(b.node(s_name), b.node(d_name))
        assert node_names(a, ra) == node_names(b, rb)
        assert edge_names(a, ra) == edge_names(b, rb)
        assert a.route(a.node(s_name), a.node(d_name)) == ra


def test_route_to_itself_raises(topo2x2):
    dma = topo2x2.pe_dma(0, 0, 0)
    with pytest.raises(RouteError, match="to itself"):
        topo2x2.route(dma, dma)


def test_local_route_is_dma_router_ctrl(topo2x2):
    # PE 5 sits on router 5 = row 1, column 1 of a 2x4 grid.
    route = topo2x2.route(topo2x2.pe_dma(0, 2, 5), topo2x2.hbm_ctrl(0, 2, 5))
    assert node_names(topo2x2, route) == [
        "sip0.cube2.pe5.dma",
        "sip0.cube2.r1c1",
        "sip0.cube2.hbm_ctrl.pe5",
    ]


# -- routes: XY order -------------------------------------------------------------------------


def test_intra_cube_columns_before_rows(topo2x2):
    fwd = topo2x2.route(topo2x2.pe_dma(0, 1, 0), topo2x2.hbm_ctrl(0, 1, 7))
    assert node_names(topo2x2, fwd) == [
        "sip0.cube1.pe0.dma",
        "sip0.cube1.r0c0",
        "sip0.cube1.r0c1",
        "sip0.cube1.r0c2",
        "sip0.cube1.r0c3",
        "sip0.cube1.r1c3",
        "sip0.cube1.hbm_ctrl.pe7",
    ]
    back = topo2x2.route(topo2x2.pe_dma(0, 1, 7), topo2x2.hbm_ctrl(0, 1, 0))
    assert [router_rc(n) for n in node_names(topo2x2, back)[1:-1]] == [
        (1, 3),
        (1, 2),
        (1, 1),
        (1, 0),
        (0, 0),
    ]


def _assert_xy_segments(names: list[str]) -> None:
    """Inside every stretch of routers: unit steps, all column moves before any row move."""
    segment: list[tuple[int, int]] = []
    for name in names + ["<end>"]:
        rc = router_rc(name)
        if rc is not None:
            segment.append(rc)
            continue
        moved_row = False
        for (r0, c0), (r1, c1) in zip(segment, segment[1:], strict=False):
            assert abs(r1 - r0) + abs(c1 - c0) == 1, names
            if r1 != r0:
                moved_row = True
            else:
                assert not moved_row, f"column move after a row move in {names}"
        segment = []


def test_every_route_is_xy_inside_and_across_cubes(topo4x4):
    w = 4
    for s_cube in range(16):
        for d_cube in range(16):
            for s_pe, d_pe in [(0, 7), (5, 2)]:
                route = topo4x4.route(
                    topo4x4.pe_dma(0, s_cube, s_pe), topo4x4.hbm_ctrl(0, d_cube, d_pe)
                )
                names = node_names(topo4x4, route)
                _assert_xy_segments(names)
                visited = []
                for n in names:
                    c = cube_of(n)
                    if not visited or visited[-1] != c:
                        visited.append(c)
                xy = [(c % w, c // w) for c in visited]
                sx, sy = s_cube % w, s_cube // w
                dx, dy = d_cube % w, d_cube // w
                # East-west first, then north-south, one cube per step: the minimal XY walk.
                expect = [(x, sy) for x in _steps(sx, dx)] + [(dx, y) for y in _steps(sy, dy)[1:]]
                assert xy == expect, names
                crossings = [e for e in edge_names(topo4x4, route) if ".conn" in e]
                assert len(crossings) == abs(sx - dx) + abs(sy - dy)


def _steps(a: int, b: int) -> list[int]:
    step = 1 if b >= a else -1
    return list(range(a, b + step, step))


def test_cross_cube_ports_in_xy_order(topo4x4):
    route = topo4x4.route(topo4x4.pe_dma(0, 5, 0), topo4x4.hbm_ctrl(0, 10, 0))
    ports = [n for n in node_names(topo4x4, route) if ".ucie." in n]
    assert ports == [
        "sip0.cube5.ucie.E",
        "sip0.cube6.ucie.W",
        "sip0.cube6.ucie.S",
        "sip0.cube10.ucie.N",
    ]


def test_host_route_single_sip(topo2x2):
    route = topo2x2.route(topo2x2.node("host"), topo2x2.hbm_ctrl(0, 3, 0))
    names = node_names(topo2x2, route)
    # The PHY of cube 3's row (row 1) joins the west port of cube 2, then east to cube 3.
    assert names[:4] == ["host", "sip0.io.pcie_ep", "sip0.io.noc", "sip0.io.ucie1"]
    ports = [n for n in names if ".ucie." in n]
    assert ports == ["sip0.cube2.ucie.W", "sip0.cube2.ucie.E", "sip0.cube3.ucie.W"]
    assert "switch" not in names


def test_cross_sip_route_passes_both_pcie_ep_and_switch(topo2sip):
    route = topo2sip.route(topo2sip.pe_dma(0, 1, 2), topo2sip.hbm_ctrl(1, 2, 3))
    names = node_names(topo2sip, route)
    i0 = names.index("sip0.io.pcie_ep")
    isw = names.index("switch")
    i1 = names.index("sip1.io.pcie_ep")
    assert i0 < isw < i1
    assert all(n.startswith("sip0.") for n in names[:i0])
    assert all(n.startswith("sip1.") for n in names[i1:])
    back = node_names(
        topo2sip, topo2sip.route(topo2sip.hbm_ctrl(1, 2, 3), topo2sip.pe_dma(0, 1, 2))
    )
    assert back.index("sip1.io.pcie_ep") < back.index("switch") < back.index("sip0.io.pcie_ep")


def test_host_route_multi_sip_uses_switch_only_for_its_target(topo2sip):
    names = node_names(topo2sip, topo2sip.route(topo2sip.node("host"), topo2sip.hbm_ctrl(1, 0, 0)))
    assert names[:4] == ["host", "switch", "sip1.io.pcie_ep", "sip1.io.noc"]
    assert not any(n.startswith("sip0.") for n in names)


# -- routes: UCIe connection choice -----------------------------------------------------------


@pytest.mark.parametrize("key", range(9))
def test_connection_is_key_mod_connections(topo2x2, key):
    src, dst = topo2x2.pe_dma(0, 0, 1), topo2x2.hbm_ctrl(0, 3, 6)
    conns = [e for e in edge_names(topo2x2, topo2x2.route(src, dst, key=key)) if ".conn" in e]
    assert conns == [f"sip0.cube0.ucie.E.conn{key % 4}", f"sip0.cube1.ucie.S.conn{key % 4}"]


@pytest.mark.parametrize(("s_pe", "d_pe"), [(0, 0), (3, 2), (7, 7), (1, 6), (6, 1)])
def test_default_key_is_the_source_pe_index(topo2x2, s_pe, d_pe):
    # docs/floorplan.md, ADR 0005: the key is the local index of the PE at the source end.
    src, dst = topo2x2.pe_dma(0, 0, s_pe), topo2x2.hbm_ctrl(0, 1, d_pe)
    assert [e for e in edge_names(topo2x2, topo2x2.route(src, dst)) if ".conn" in e] == [
        f"sip0.cube0.ucie.E.conn{s_pe % CONNECTIONS}"
    ]
    assert topo2x2.flow_key(src, dst) == s_pe


@pytest.mark.parametrize("d_pe", [0, 2, 5, 7])
def test_host_source_takes_the_destination_pe_index(topo2x2, d_pe):
    host, ctrl = topo2x2.node("host"), topo2x2.hbm_ctrl(0, 1, d_pe)
    conns = [e for e in edge_names(topo2x2, topo2x2.route(host, ctrl)) if ".conn" in e]
    assert conns == [f"sip0.io.ucie0.conn{d_pe % 4}", f"sip0.cube0.ucie.E.conn{d_pe % 4}"]


@pytest.mark.parametrize(("s_pe", "d_pe"), [(3, 2), (1, 6)])
def test_response_route_with_request_key_returns_on_same_connection(topo2x2, s_pe, d_pe):
    src, dst = topo2x2.pe_dma(0, 0, s_pe), topo2x2.hbm_ctrl(0, 1, d_pe)
    key = topo2x2.flow_key(src, dst)
    back = topo2x2.route(dst, src, key)
    assert [e for e in edge_names(topo2x2, back) if ".conn" in e] == [
        f"sip0.cube1.ucie.W.conn{s_pe % CONNECTIONS}"
    ]
