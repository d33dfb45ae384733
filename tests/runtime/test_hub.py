"""The greenlet hub: programs block on simulated events and resume in event order; a run where
every program waits and no event is pending is a deadlock that names who waits; an exception
in one program ends the run."""

import numpy as np
import pytest

from kernbench.bench import BenchContext
from kernbench.core.errors import KernelError, SimulationError
from kernbench.runtime import Hub, System


@pytest.fixture
def sim(topo1x1):
    return System(topology=topo1x1).sim


def test_programs_resume_in_the_order_their_events_fire(sim):
    hub = Hub(sim)
    log = []

    def program(name, delays):
        for d in delays:
            hub.wait(sim.env.timeout(d), f"{name} sleeps")
            log.append((name, sim.env.now))
        return name.upper()

    a = hub.spawn(program, "a", [2.0, 3.0], name="a")
    b = hub.spawn(program, "b", [3.0, 1.0], name="b")
    hub.run(sim.env.all_of([a.done, b.done]))
    assert log == [("a", 2.0), ("b", 3.0), ("b", 4.0), ("a", 5.0)]
    assert (a.value, b.value) == ("A", "B")


def test_waiting_on_a_processed_event_returns_its_value_at_once(sim):
    hub = Hub(sim)
    ev = sim.env.timeout(1.0, value="ready")
    hub.wait(ev, "main waits")  # from the main greenlet: runs the simulation until then
    assert sim.env.now == 1.0

    def late():
        return hub.wait(ev, "late reader"), sim.env.now

    task = hub.spawn(late, name="late")
    hub.run(task.done)
    assert task.value == ("ready", 1.0)


def test_two_programs_waiting_on_each_other_deadlock(sim):
    hub = Hub(sim)
    ping, pong = sim.event(), sim.event()

    def left():
        hub.wait(sim.env.timeout(5.0), "left warms up")
        hub.wait(pong, "left waits for right's pong")
        ping.succeed()

    def right():
        hub.wait(ping, "right waits for left's ping")
        pong.succeed()

    tasks = [hub.spawn(left, name="left"), hub.spawn(right, name="right")]
    with pytest.raises(SimulationError) as err:
        hub.run(sim.env.all_of([t.done for t in tasks]))
    msg = str(err.value)
    assert msg.startswith("deadlock at t=5.000 ns")
    assert "2 program(s) still wait" in msg
    assert "left waits for right's pong" in msg and "right waits for left's ping" in msg


def test_host_programs_of_two_devices_that_wait_on_each_other_deadlock(make_topology):
    spec = make_topology(1, 1, sips=2).spec
    ctx = BenchContext.from_spec(spec, devices=(0, 1))
    events = {}

    def program(dev):
        mine = events.setdefault(dev.sip, dev.system.sim.event())
        other = events.setdefault(1 - dev.sip, dev.system.sim.event())
        dev.tensor(np.ones(64, np.float32))  # some simulated time first
        dev.hub.wait(other, f"{dev.name} waits for the other device")
        mine.succeed()

    with pytest.raises(SimulationError, match="deadlock") as err:
        ctx.run_devices(program)
    assert "sip0 waits for the other device" in str(err.value)
    assert "sip1 waits for the other device" in str(err.value)


def test_an_exception_in_one_program_stops_the_run(sim):
    hub = Hub(sim)
    reached = []

    def patient():
        hub.wait(sim.env.timeout(1000.0), "patient sleeps")
        reached.append(sim.env.now)

    def faulty():
        hub.wait(sim.env.timeout(3.0), "faulty sleeps")
        raise ValueError("host program failed")

    tasks = [hub.spawn(patient, name="patient"), hub.spawn(faulty, name="faulty")]
    with pytest.raises(ValueError, match="host program failed"):
        hub.run(sim.env.all_of([t.done for t in tasks]))
    assert sim.env.now == 3.0 and reached == []


def test_a_failing_device_program_stops_run_devices(make_topology):
    spec = make_topology(1, 1, sips=2).spec
    ctx = BenchContext.from_spec(spec, devices=(0, 1))

    def program(dev):
        if dev.sip == 1:
            raise KernelError("sip1 gave up")
        dev.tensor(np.ones(1 << 16, np.float32))  # takes simulated time; never finishes
        return "done"

    with pytest.raises(KernelError, match="sip1 gave up"):
        ctx.run_devices(program)
