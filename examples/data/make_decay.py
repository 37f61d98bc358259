"""Write decay_300K.csv, decay_320K.csv and decay_340K.csv: a first-order decay measured at three
temperatures, for examples/arrhenius_global.model (a global fit).

    python examples/data/make_decay.py     # rewrites the three files

The files are synthetic and fully determined by the seed below, so running this again gives the
same bytes. Each run starts from its own concentration A (the stock was made up three times) and
decays as A·exp(-k·t), with the rate k following one Arrhenius law: k = k320·exp(-Ea/R·(1/T -
1/320 K)). The "true" values the fit should recover: A = 1.00, 0.80 and 1.20 mM, k320 = 0.050
per minute (ln k320 = -3.00), Ea = 60 kJ/mol. Concentrations carry a noise of 0.01 mM.
"""
import os

import numpy as np

SEED = 11
R = 0.008314                  # kJ/(mol·K)
EA = 60.0                     # kJ/mol
K320 = 0.050                  # 1/min at 320 K
RUNS = [(300, 1.00, 90.0), (320, 0.80, 40.0), (340, 1.20, 15.0)]  # T (K), A (mM), last minute
POINTS = 16


def main() -> None:
    rng = np.random.default_rng(SEED)
    folder = os.path.dirname(os.path.abspath(__file__))
    for temp, a, last in RUNS:
        k = K320 * np.exp(-EA / R * (1 / temp - 1 / 320))
        t = np.linspace(0.0, last, POINTS)
        c = a * np.exp(-k * t) + rng.normal(0.0, 0.01, POINTS)
        path = os.path.join(folder, f"decay_{temp}K.csv")
        with open(path, "w", newline="\n") as f:
            f.write("time_min,temp_K,conc_mM\n")
            for ti, ci in zip(t, c):
                f.write(f"{ti:.2f},{temp},{ci:.4f}\n")
        print(f"wrote {path} ({POINTS} rows, k = {k:.4f}/min)")


if __name__ == "__main__":
    main()
