"""Write pendulum.csv: simulated timings of a simple pendulum, for examples/pendulum.model.

    python examples/data/make_pendulum.py          # rewrites examples/data/pendulum.csv

The file is synthetic and fully determined by the seed below, so running this again gives the
same bytes. The "true" values the fit should recover: g = 9.81 m/s², and 2.1 cm between the
point where the length was measured to (the top of the bob) and the bob's centre of mass.

Each row is one length: the string length in metres (read off a tape to the millimetre), the
period in seconds (a stopwatch timing of 5, 10 or 20 swings divided by the count), and that
period's standard uncertainty: about 0.1 s of reaction time over the whole timing, so
0.1 / swings.
"""
import os

import numpy as np

SEED = 2024
G = 9.81         # m/s²
OFFSET = 0.021   # m: the length as measured falls short of the pivot-to-centre distance
ROWS = 60


def main() -> None:
    rng = np.random.default_rng(SEED)
    length = np.round(np.sort(rng.uniform(0.10, 2.00, ROWS)), 3)
    swings = rng.choice([5, 10, 20], ROWS)
    sigma = 0.1 / swings
    period = 2 * np.pi * np.sqrt((length + OFFSET) / G) + rng.normal(0.0, sigma)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pendulum.csv")
    with open(path, "w", newline="\n") as f:
        f.write("length_m,period_s,sigma_s\n")
        for row in zip(length, period, sigma):
            f.write("{:.3f},{:.4f},{:.3f}\n".format(*row))
    print(f"wrote {path} ({ROWS} rows)")


if __name__ == "__main__":
    main()
