"""FIFO queues of fluid: how the fluid model shares a resource among flows (ADR 0034).

Each shared resource (a directed edge, an HBM pseudo-channel) is a FIFO queue with an unbounded
buffer, as in the flit model, but its content is fluid: a list of segments, each an amount of
bytes and the fraction of it each flow owns. Bytes leave the queue at the resource's capacity,
the head segment first, each flow at its fraction of that rate; with nothing queued and no
more offered than the capacity, bytes pass straight through. A flow's rate out of one
resource reaches the next resource on its path after the hop's delay (the time its head takes
from one to the next alone). So a flow that reaches a congested resource behind a backlog
waits for the backlog, and a flow throttled downstream still pushes its bytes through the
resources before the throttle at the rate it gets there: the two effects of the flit model's
FIFOs a single rate per flow does not have (docs/fluid-model.md).

A node between two resources may hold a flow's head alone for part of the hop's delay (its
overhead, ADR 0035): what leaves the first resource meanwhile reaches the next at once, with
the head (a lump, queued as a segment of its own, or joining the filling tail when smaller
than 1/``GRAIN`` of the backlog); later changes take the hop's delay less the hold, as the
flit model's flits behind a held head catch up with it.

A flow is fed at its source's rate until all its bytes are in; it is done at a resource when
its input has ended and no queued segment holds any of its bytes, and done when that is so at
every resource of its last stage. Events: a change of a flow's input at a resource (the
changes of one instant at a queue settle together, in a late event, unless the queue holds
nothing and has room for all it is offered: then it passes the change straight on), and the
head segment of a queue running empty.

Changes ripple through queues that feed each other: every change of mix at one queue changes
the rates of all the flows it sends on. Two bounds keep that from growing with the size of the
transfers: a change of less than ``DELTA`` of a flow's rate is not passed on (the end of a
flow always is), and a queue orders its bytes to 1/``GRAIN`` of its backlog (a change of mix
while the segment filling behind others holds less continues that segment, its fractions
those of the bytes in it, unless a flow in it has ended: its last bytes do not wait for
others').
"""

from collections.abc import Callable, Sequence

from kernbench.sim.context import Sim
from kernbench.sim.observer import NullObserver

# A flow's rate change below this fraction of its rate is not passed on to its next resource.
DELTA = 1e-3
# A queue orders its bytes to this fraction of its backlog: a change of mix (or a lump) while
# the segment filling behind others holds less continues that segment, its fractions those of
# its bytes.
GRAIN = 16
# Bytes below this are nothing (floating-point residue of a drained segment).
EPS = 1e-9


class Part:
    """A flow's bytes at one resource of one of its stages."""

    __slots__ = ("flow", "stage", "w", "queue", "ended", "gone", "held")

    def __init__(self, flow: "Flowing", stage: int, w: float, queue: "Queue"):
        self.flow = flow
        self.stage = stage
        self.w = w  # bytes on this resource per byte of the flow
        self.queue = queue
        self.ended = False  # its input has ended
        self.gone = False  # its last byte has left
        self.held = 0  # queued segments holding some of its bytes


class Flowing:
    """What the network keeps of a flow (the fluid model's Flow carries one)."""

    __slots__ = ("stages", "delays", "holds", "sent", "pending", "gates", "left", "limits", "done")

    def __init__(
        self,
        delays: Sequence[float],
        limits: set[int],
        done: Callable[[], None],
        holds: Sequence[float] = (),
    ):
        self.stages: list[list[Part]] = []
        self.delays = delays  # from stage s to stage s + 1
        # Of delays[s], what the node between holds the head alone for: the bytes behind it
        # catch up and go on at once when it is let go (0: none).
        self.holds = holds or (0.0,) * len(delays)
        self.sent: list[float] = []  # the flow's rate last passed on into each stage
        self.pending: list[list | None] = []  # per stage, a delivery not yet made
        self.gates: list[list | bool | None] = []  # per stage, its head's hold (see _pass)
        self.left = 0  # parts of the last stage not yet done
        self.limits = limits  # resources where its bytes queued (observation)
        self.done = done

    def stage(self, resources: Sequence[tuple["Queue", float]]) -> None:
        """Add the next stage: the queues it crosses together, each with the bytes it carries
        per byte of the flow."""
        s = len(self.stages)
        self.stages.append([Part(self, s, w, q) for q, w in resources])
        self.sent.append(-1.0)
        self.pending.append(None)
        self.gates.append(None)
        self.left = len(resources)


class Segment:
    __slots__ = ("amount", "comp", "open", "bytes", "mix", "since")

    def __init__(self, mix: dict[Part, float], now: float):
        total = sum(mix.values())
        self.amount = 0.0
        self.comp = {p: x / total for p, x in mix.items()}  # part -> its fraction of the bytes
        self.open = True  # still filling
        self.bytes = dict.fromkeys(mix, 0.0)  # each part's bytes in it, up to ``since``
        self.mix = mix  # what each part offers since then
        self.since = now

    def fold(self, mix: dict[Part, float], now: float) -> list[Part]:
        """Count the bytes offered since the last fold, go on with ``mix``, and make the
        fractions those of the bytes in it; the parts new to it."""
        dt = now - self.since
        got = self.bytes
        for p, x in self.mix.items():
            got[p] += x * dt
        new = [p for p in mix if p not in got]
        for p in new:
            got[p] = 0.0
        self.mix, self.since = mix, now
        total = sum(got.values())
        if total > 0.0:
            self.comp = {p: b / total for p, b in got.items()}
        else:
            self.comp.update(dict.fromkeys(new, 0.0))
        return new

    def add(self, part: Part, nbytes: float, now: float) -> bool:
        """``nbytes`` of ``part`` come into it at once; whether ``part`` is new to it."""
        self.fold(self.mix, now)
        new = part not in self.bytes
        self.bytes[part] = self.bytes.get(part, 0.0) + nbytes
        self.amount += nbytes
        total = sum(self.bytes.values())
        self.comp = {p: b / total for p, b in self.bytes.items()}
        return new


class Queue:
    """One resource's FIFO."""

    __slots__ = ("id", "cap", "inp", "total", "segs", "out", "t", "version", "ended")

    def __init__(self, rid: int, cap: float):
        self.id = rid
        self.cap = cap  # bytes/ns
        self.inp: dict[Part, float] = {}  # offered, bytes/ns
        self.total = 0.0
        self.segs: list[Segment] = []
        self.out: dict[Part, float] = {}
        self.t = 0.0
        self.version = 0
        self.ended: list[Part] | None = None  # inputs ended this instant; None: not changed


class Network:
    """The queues of one run, and the flows through them."""

    def __init__(
        self,
        call_at: Callable[..., None],
        call_late: Callable[..., None],
        clock: Callable[[], float],
        track: bool,
    ) -> None:
        self.call_at = call_at
        self.call_late = call_late
        self.clock = clock
        self.track = track
        self.queues: dict[int, Queue] = {}
        self.changed: list[Queue] = []  # queues whose input changed this instant
        self.n = {"changes": 0, "passed": 0, "drains": 0, "settles": 0}

    def queue(self, rid: int, cap: float) -> Queue:
        q = self.queues.get(rid)
        if q is None:
            q = self.queues[rid] = Queue(rid, cap)
        return q

    def start(self, flow: Flowing, rate: float, size: float, now: float, hold: float = 0.0) -> None:
        """Feed ``flow``'s ``size`` bytes into its first stage at ``rate`` from ``now`` on; with
        ``hold``, its head was held that long on the way: the bytes sent meanwhile come at once."""
        lump = min(size, hold * rate)
        if lump >= size:
            self._feed(flow, 0, 0.0, True, now, size)
            return
        self._feed(flow, 0, rate, False, now, lump)
        self.call_at(now + (size - lump) / rate, self._end_source, flow)

    def _end_source(self, flow: Flowing) -> None:
        self._feed(flow, 0, 0.0, True, self.clock())

    # -- between stages --------------------------------------------------------------------
    def _feed(
        self, flow: Flowing, s: int, rate: float, last: bool, now: float, lump: float = 0.0
    ) -> None:
        for part in flow.stages[s]:
            self._input(part, rate * part.w, last, now, lump * part.w)

    def _pass(self, part: Part, rate: float, last: bool, now: float) -> None:
        """``part``'s output (bytes/ns of its resource) changed: tell the next stage."""
        flow, s = part.flow, part.stage
        if s + 1 == len(flow.stages):
            if last:
                flow.left -= 1
                if flow.left == 0:
                    flow.done()
            return
        r = rate / part.w
        old = flow.sent[s + 1]
        if not last and r > 0.0 and old > 0.0 and abs(r - old) <= DELTA * old:
            return
        flow.sent[s + 1] = r
        self.n["passed"] += 1
        hold = flow.holds[s]
        if hold > 0.0:
            # The head reaches the next stage delays[s] after it left this one; the node
            # between holds it ``hold`` of that, and what leaves here meanwhile comes with it.
            gate = flow.gates[s + 1]
            if gate is None:
                if r > 0.0 or last:  # the head: [left at, rate, bytes so far, since, last]
                    gate = flow.gates[s + 1] = [now, r, 0.0, now, last]
                    self.call_at(now + flow.delays[s], self._open_gate, flow, s + 1, gate)
                return
            if gate is not True:
                if now <= gate[0] + hold:
                    gate[2] += gate[1] * (now - gate[3])
                    gate[1], gate[3], gate[4] = r, now, last
                    return
                # After the head, never before it (rounding).
                t = max(now + flow.delays[s] - hold, gate[0] + flow.delays[s])
            else:
                t = now + flow.delays[s] - hold
        else:
            t = now + flow.delays[s]
        p = flow.pending[s + 1]
        if p is not None and p[0] == t:
            p[1] = r
            p[2] = p[2] or last
            return
        p = flow.pending[s + 1] = [t, r, last]
        self.call_at(t, self._deliver, flow, s + 1, p)

    def _open_gate(self, flow: Flowing, s: int, gate: list) -> None:
        """The head reaches stage ``s``, with what left the stage before during its hold."""
        if flow.gates[s] is not gate:  # opened already, by a delivery due at the same time
            return
        flow.gates[s] = True
        rate = gate[1]
        lump = gate[2] + rate * (gate[0] + flow.holds[s - 1] - gate[3])
        self._feed(flow, s, rate, gate[4], self.clock(), lump)

    def _deliver(self, flow: Flowing, s: int, p: list) -> None:
        gate = flow.gates[s]
        if isinstance(gate, list):  # due with the head, rounded ahead of it: the head first
            self._open_gate(flow, s, gate)
        if flow.pending[s] is p:
            flow.pending[s] = None
        self._feed(flow, s, p[1], p[2], p[0])

    # -- one queue -------------------------------------------------------------------------
    def _advance(self, q: Queue, now: float) -> None:
        dt = now - q.t
        q.t = now
        if dt <= 0.0 or not q.segs:
            return
        head, tail = q.segs[0], q.segs[-1]
        if head is tail:
            head.amount += ((q.total if head.open else 0.0) - q.cap) * dt
        else:
            head.amount -= q.cap * dt
            if tail.open:
                tail.amount += q.total * dt

    def _input(self, part: Part, rate: float, last: bool, now: float, lump: float = 0.0) -> None:
        """``part``'s input changed (``lump`` bytes of it came at once, behind what is queued);
        its queue settles once all changes of the instant are in, or, holding nothing and with
        room for all it is offered, passes the change straight on."""
        q = part.queue
        self._advance(q, now)
        self.n["changes"] += 1
        if lump > EPS:
            self._lump(q, part, lump, now)
        if last:
            q.inp.pop(part, None)
            part.ended = True
        else:
            q.inp[part] = rate
        if q.ended is None and not q.segs:
            total = sum(q.inp.values())
            if total <= q.cap * (1.0 + EPS):
                # Nothing queued and room for all it is offered: it passes the change straight
                # on, with no settling (a later change this instant that overloads it will).
                q.total = total
                q.version += 1
                if last:
                    self._gone(q, part)
                elif q.out.get(part) != rate:
                    q.out[part] = rate
                    self._pass(part, rate, False, now)
                return
        if q.ended is None:
            q.ended = []
            if not self.changed:
                self.call_late(self._settle)
            self.changed.append(q)
        if last:
            q.ended.append(part)

    def _lump(self, q: Queue, part: Part, lump: float, now: float) -> None:
        """``lump`` bytes of ``part`` come at once: a segment of their own behind the queued
        ones, or, if that is less than 1/GRAIN of the backlog, the bytes of the filling tail
        (ordered to that, as a change of mix is)."""
        q.version += 1  # a drain due now no longer drains what it was due for
        segs = q.segs
        tail = segs[-1] if segs else None
        if tail is not None and tail.open:
            if (
                len(segs) > 1
                and (tail.amount + lump) * GRAIN < self._backlog(q)
                and not any(p.ended for p in tail.comp)
            ):
                if tail.add(part, lump, now):
                    part.held += 1
                return
            if tail.amount <= EPS:  # nothing in it yet
                segs.pop()
                self._release(q, tail)
            else:
                tail.fold({}, now)
                tail.open = False
        seg = Segment({part: 1.0}, now)
        seg.amount, seg.open = lump, False
        part.held += 1
        segs.append(seg)

    def _settle(self) -> None:
        """The queues whose inputs changed this instant: a new segment for the new mix, and
        what they send on."""
        now = self.clock()
        changed, self.changed = self.changed, []
        self.n["settles"] += 1
        for q in changed:
            ended, q.ended = q.ended or [], None
            q.total = sum(q.inp.values())
            segs = q.segs
            if segs:
                tail = segs[-1]
                if tail.open and tail.amount <= EPS:  # nothing in it yet: the new mix replaces it
                    segs.pop()
                    self._release(q, tail)
                    new = True
                elif (
                    tail.open
                    and len(segs) > 1
                    and tail.amount * GRAIN < self._backlog(q)
                    and not any(p.ended for p in tail.comp)
                ):
                    for p in tail.fold({p: x for p, x in q.inp.items() if x > 0.0}, now):
                        p.held += 1
                    new = False
                else:
                    if tail.open:  # closed: its fractions are those of its bytes
                        tail.fold({}, now)
                        tail.open = False
                    new = True
                if new and q.total > 0.0 and (segs or q.total > q.cap * (1.0 + EPS)):
                    self._open(q)
            elif q.total > q.cap * (1.0 + EPS):
                self._open(q)
            for part in ended:
                if part.held == 0:
                    self._gone(q, part)
            self._outputs(q, now)

    @staticmethod
    def _backlog(q: Queue) -> float:
        return sum(seg.amount for seg in q.segs)

    def _open(self, q: Queue) -> None:
        seg = Segment({p: x for p, x in q.inp.items() if x > 0.0}, q.t)
        for p in seg.comp:
            p.held += 1
        q.segs.append(seg)

    def _release(self, q: Queue, seg: Segment) -> None:
        """``seg`` leaves the queue: parts whose last bytes it held are done here."""
        for p in seg.comp:
            p.held -= 1
            if p.ended and p.held == 0:
                self._gone(q, p)

    def _gone(self, q: Queue, p: Part) -> None:
        if not p.gone:
            p.gone = True
            q.out.pop(p, None)
            self._pass(p, 0.0, True, q.t)

    def _drain(self, q: Queue, version: int) -> None:
        if version != q.version:
            return
        now = self.clock()
        self._advance(q, now)
        self.n["drains"] += 1
        if q.segs:
            self._release(q, q.segs.pop(0))
            if q.segs and q.segs[0].open:  # the head's fractions: those of its bytes so far
                head = q.segs[0]
                head.fold(head.mix, now)
        if q.ended is None:  # else it settles later this instant
            self._outputs(q, now)

    def _outputs(self, q: Queue, now: float) -> None:
        segs = q.segs
        if segs and segs[0].open and segs[0].amount <= EPS and q.total <= q.cap * (1.0 + EPS):
            self._release(q, segs.pop(0))
        if segs:
            head = segs[0]
            new = {p: q.cap * x for p, x in head.comp.items()}
            if self.track:
                for p in head.comp:
                    p.flow.limits.add(q.id)
        else:
            new = dict(q.inp)
        old = q.out
        for p, x in new.items():
            y = old.get(p)
            if y is None or abs(x - y) > 1e-12 * y:
                self._pass(p, x, False, now)
        for p in old:
            if p not in new and not p.gone:
                self._pass(p, 0.0, False, now)
        q.out = new
        q.version += 1
        if segs:
            head = segs[0]
            if head.open:
                if q.total < q.cap:
                    dt = head.amount / (q.cap - q.total)
                else:
                    return
            else:
                dt = head.amount / q.cap
            self.call_at(now + max(dt, 0.0), self._drain, q, q.version)


def alone_ns(
    stages: Sequence[Sequence[tuple[float, float]]],
    delays: Sequence[float],
    holds: Sequence[float],
    hold0: float,
    rate: float,
    size: float,
) -> float:
    """How long a flow takes alone through ``stages`` (per stage, each resource's capacity and
    the flow's bytes on it per byte), fed ``size`` bytes at ``rate`` from 0: a network of its
    own, on a simulation of its own."""
    sim = Sim(observer=NullObserver())
    end: list[float] = []
    net = Network(sim.call_at, sim.call_late, lambda: sim.now, False)
    flow = Flowing(delays, set(), lambda: end.append(sim.now), holds)
    for stage in stages:
        flow.stage([(net.queue(len(net.queues), cap), w) for cap, w in stage])
    net.start(flow, rate, size, 0.0, hold0)
    sim.env.run()
    assert end, "a lone flow did not finish"
    return end[0]
