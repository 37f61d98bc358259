"""Write linear_plateau.csv: a simulated nitrogen-rate trial, for examples/linear_plateau.model.

    python examples/data/make_linear_plateau.py    # rewrites examples/data/linear_plateau.csv

The file is synthetic and fully determined by the seed below, so running this again gives the
same bytes. The "true" response the fit should recover: 4.0 t/ha without fertiliser, 3.0 t/ha
more per 100 kg of nitrogen, up to a critical rate of 140 kg/ha; beyond it the yield stays on a
plateau of 8.2 t/ha. Four plots per rate, with a plot-to-plot spread of 0.35 t/ha.
"""
import os

import numpy as np

SEED = 16
INTERCEPT = 4.0    # t/ha
SLOPE = 0.030      # t/ha per kg/ha of nitrogen
CRITICAL = 140.0   # kg/ha
RATES = [0, 30, 60, 90, 120, 150, 180, 210, 240]
PLOTS = 4


def main() -> None:
    rng = np.random.default_rng(SEED)
    rate = np.repeat(RATES, PLOTS).astype(float)
    mean = INTERCEPT + SLOPE * np.minimum(rate, CRITICAL)
    grain = mean + rng.normal(0.0, 0.35, rate.size)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "linear_plateau.csv")
    with open(path, "w", newline="\n") as f:
        f.write("plot,nitrogen_kg_ha,yield_t_ha\n")
        for k, (n, y) in enumerate(zip(rate, grain), start=1):
            f.write(f"{k},{n:.0f},{y:.2f}\n")
    print(f"wrote {path} ({rate.size} rows)")


if __name__ == "__main__":
    main()
