"""How many CPU threads torch uses in this process: one decision for train, evaluate, predict and
protocol.

Why it matters: torch's CPU kernels split each operation over their threads and wait for the
slowest; when another process keeps one of those cores busy, every operation waits for a thread
that is not running, and a training step that takes 0.25 s alone takes seconds (benchmarks/results/
threads.md). So the default is the cores that are *free*, not all the cores there are.

The count, in this order (the first that applies):
  1. `--threads N` on the command line (`request`), for every command of the process;
  2. `train.threads` in the config (train and protocol);
  3. `OMP_NUM_THREADS` in the environment (what torch itself reads);
  4. on `--resume`, the count the run recorded in run.json, so the resumed steps compute exactly
     what the uninterrupted run would have (the thread count changes floating-point summation order);
  5. otherwise the cores this process may use (CPU affinity and a cgroup CPU quota) minus those
     other processes keep busy (measured over 0.2 s from /proc/stat), capped at MAX_AUTO, at least 1.
Whatever the source, a count above the free cores gets a one-line warning on stderr (with the count
to use instead); a machine with no free core at all is noted with --verbose.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from functools import lru_cache
from pathlib import Path

# more threads than this hardly speed up these models (batches of a few images of <= 256 px) and
# slow every other job on the machine; a larger machine can still be asked for more with --threads
MAX_AUTO = 8
# a core counts as free while other processes use less than this fraction of it: a thread that
# shares its core with another busy process stalls every operation it takes part in
SLACK = 0.2
WINDOW_S = 0.2

_requested: int | None = None
_warned: set[str] = set()  # messages already shown by this process (a protocol trains many runs)


def request(threads: int | None) -> None:
    """The command line's `--threads` (None: not given); it wins over config and environment."""
    global _requested
    _requested = threads


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, bounded by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 cpu.max or v1 cfs quota/period), None when unlimited."""
    try:
        v2 = Path("/sys/fs/cgroup/cpu.max")
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        if v1.is_file():
            quota = int(v1.read_text())
            return None if quota <= 0 else quota / int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        pass
    return None


def _cpu_times() -> dict[str, tuple[int, int]]:
    """/proc/stat: cpu name -> (busy ticks, total ticks)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *fields = line.split()
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        out[name] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


@lru_cache(maxsize=1)
def busy_cores() -> float:
    """Cores of this process's CPU set that OTHER processes keep busy (0.0 .. usable), measured once
    per process over WINDOW_S (this process's own CPU time subtracted); the 1-minute load average
    where /proc/stat is absent; 0.0 where neither is."""
    try:
        allowed = [f"cpu{c}" for c in sorted(os.sched_getaffinity(0))]
        before, own = _cpu_times(), time.process_time()
        time.sleep(WINDOW_S)
        after, own = _cpu_times(), time.process_time() - own
    except (OSError, AttributeError, ValueError):
        try:
            return float(min(os.getloadavg()[0], usable_cores()))
        except (OSError, AttributeError):
            return 0.0

    def fraction(name):
        busy, total = (a - b for a, b in zip(after[name], before[name]))
        return busy / total if total > 0 else 0.0

    if all(name in after and name in before for name in allowed):
        busy = sum(fraction(name) for name in allowed)
    else:  # CPU ids not as /proc/stat numbers them (a virtualised /proc): the machine's average
        busy = fraction("cpu") * len(allowed)
    return max(0.0, min(float(usable_cores()), busy - own / WINDOW_S))


def auto_threads() -> int:
    """The free cores (see the module docstring, step 5)."""
    free = usable_cores() - busy_cores()
    return max(1, min(MAX_AUTO, math.floor(free + SLACK)))


def _environment() -> int | None:
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value > 0 else None


def choose(configured: int | None = None, recorded: int | None = None) -> tuple[int, str]:
    """-> (thread count, where it came from) in the module docstring's order."""
    for count, source in ((_requested, "--threads"), (configured, "train.threads"),
                          (_environment(), "OMP_NUM_THREADS"), (recorded, "the run's run.json")):
        if count:
            return int(count), source
    return auto_threads(), "the free cores"


def use_threads(configured: int | None = None, *, recorded: int | None = None, quiet: bool = False) -> int:
    """Set torch's intra-op thread count for this process (`choose`) and return it; warn on stderr
    (unless `quiet`; once per process and count) when it exceeds the cores other processes leave free."""
    import torch  # here, so commands that never compute (synth, verify) do not load it

    threads, source = choose(configured, recorded)
    torch.set_num_threads(threads)
    usable, busy = usable_cores(), busy_cores()
    fits = max(1, math.floor(usable - busy + SLACK))
    if threads > fits and not quiet:
        message = (f"vlsa: warning: the machine is oversubscribed: other processes keep {busy:.1f} of the {usable} "
                   f"cores this process may use busy, and {threads} torch threads (from {source}) share them, which "
                   f"can make every step many times slower; use --threads {fits}")
        if message not in _warned:
            _warned.add(message)
            print(message, file=sys.stderr)
    elif threads > usable - busy + SLACK:
        # no core free at all: nothing better to choose, so only said with --verbose (stderr stays
        # the one line of an error for a command that fails)
        logging.getLogger("vlsa").info(f"other processes keep {busy:.1f} of the {usable} cores this process may "
                                       "use busy; steps will be slower than on an idle machine")
    return threads
    _warned.add((threads, fits))
    if threads > fits:
        print(f"vlsa: warning: the machine is oversubscribed: other processes keep {busy:.1f} of the {usable} "
              f"cores this process may use busy, and {threads} torch threads (from {source}) share them, which "
              f"can make every step many times slower; use --threads {fits}", file=sys.stderr)
    elif threads > usable - busy + SLACK:  # no core free at all: nothing to choose, but say why it is slow
        print(f"vlsa: note: other processes keep {busy:.1f} of the {usable} cores this process may use busy; "
              "steps will be slower than on an idle machine", file=sys.stderr)
    return threads
