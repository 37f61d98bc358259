"""Write arrhenius.csv: simulated rate constants of a reaction at 16 temperatures, for
examples/arrhenius.model.

    python examples/data/make_arrhenius.py          # rewrites examples/data/arrhenius.csv

The file is synthetic and fully determined by the seed below, so running this again gives the
same bytes. The "true" values the fit should recover: a pre-exponential factor A = 1.2e7 per
second and an activation energy Ea = 40.5 kJ/mol. Each rate constant carries a 4% error (a
multiplicative, log-normal scatter, as relative errors of kinetics measurements are).
"""
import os

import numpy as np

SEED = 1889      # the year of Arrhenius's paper
A = 1.2e7        # 1/s
EA = 40500.0     # J/mol
R = 8.314        # J/(mol K)
ROWS = 16


def main() -> None:
    rng = np.random.default_rng(SEED)
    temperature = np.linspace(290.0, 365.0, ROWS)
    rate = A * np.exp(-EA / (R * temperature)) * np.exp(rng.normal(0.0, 0.04, ROWS))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arrhenius.csv")
    with open(path, "w", newline="\n") as f:
        f.write("T_K,k_per_s\n")
        for row in zip(temperature, rate):
            f.write("{:.1f},{:.5g}\n".format(*row))
    print(f"wrote {path} ({ROWS} rows)")


if __name__ == "__main__":
    main()
