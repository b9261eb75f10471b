"""Training speed against torch's CPU thread count, in one process: CPU-seconds and wall time
per generator iteration of the default networks and settings, for each thread count.

Runs alternate between the thread counts in short rounds (``--rounds`` x ``--iterations``
iterations each, the same networks and data), so a change in machine load hits all of them
alike. CPU time (time.process_time: every thread of this process) is what training costs the
machine; wall time is what the user waits. Both are printed, with their ratios to the first
thread count. hsanomaly.defaults.TRAIN_THREADS records the choice this measures.

    python benchmarks/train_threads.py [--scene examples/abu-airport-2.tif] [--threads 1,2]
                                       [--rounds 4] [--iterations 20]

Last line: cpu_ratio_<t>=<CPU-s per iteration with t threads / with the first> ... and the
same for wall time.
"""

import argparse
import os
import time
from pathlib import Path

import torch

from hsanomaly.training.data import load_training_data
from hsanomaly.training.networks import Critic, Generator
from hsanomaly.training.settings import Settings
from hsanomaly.training.wgan import WGANGP

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default=str(ROOT / "examples" / "abu-airport-2.tif"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20, help="iterations per round")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]

    data = load_training_data([args.scene])
    windows = torch.from_numpy(data.train)
    trainers = {}
    for t in counts:
        torch.manual_seed(0)
        trainers[t] = WGANGP(Generator(data.bands), Critic(data.bands), Settings(iterations=10**6))
    print(f"{args.scene}: {len(data.train)} windows of {data.bands} bands, batch "
          f"{Settings.batch}, {Settings.critic_steps} critic steps; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    totals = {t: [0.0, 0.0, 0] for t in counts}
    for _ in range(args.rounds):
        for t in counts:
            torch.set_num_threads(t)
            trainers[t].step(windows)                     # warm the pool at this count
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.iterations):
                trainers[t].step(windows)
            totals[t][0] += time.perf_counter() - wall
            totals[t][1] += time.process_time() - cpu
            totals[t][2] += args.iterations
    first = counts[0]
    per_it = {t: (w / n, c / n) for t, (w, c, n) in totals.items()}
    for t in counts:
        wall, cpu = per_it[t]
        print(f"{t} thread{'s' if t > 1 else ' '}: {1000 * cpu:6.1f} CPU-ms/it "
              f"(x{cpu / per_it[first][1]:.2f}), {1000 * wall:6.1f} wall-ms/it "
              f"(x{wall / per_it[first][0]:.2f}); 800 iterations: {800 * cpu:.0f} CPU-s, "
              f"{800 * wall:.0f} s")
    print(f"load {os.getloadavg()[0]:.1f}")
    print(" ".join(f"cpu_ratio_{t}={per_it[t][1] / per_it[first][1]:.2f}" for t in counts) + " "
          + " ".join(f"wall_ratio_{t}={per_it[t][0] / per_it[first][0]:.2f}" for t in counts))


if __name__ == "__main__":
    main()
