"""Write growth_trial.csv: a simulated fertiliser trial, for examples/growth_trial.model.

    python examples/data/make_growth_trial.py      # rewrites examples/data/growth_trial.csv

The file is synthetic and fully determined by the seed below, so running this again gives the
same bytes. It is laid out as a field sheet is: a plot label, the treatment by name, the sowing
date and a free-text note (text columns), then the light the plot received and the plant height
(numbers). The "true" effects the fit should recover: 30 cm under control, 36 cm with nitrogen,
41 cm with nitrogen and phosphorus, and +0.8 cm per extra mol/m²/day of light.
"""
import os

import numpy as np

SEED = 7
MEANS = {"control": 30.0, "nitrogen": 36.0, "nitrogen+phosphorus": 41.0}  # cm, at mean light
LIGHT_SLOPE = 0.8  # cm per mol/m²/day
PLOTS = 10  # per treatment
NOTES = ["", "", "", "slug damage", "", "edge plot", "", "re-measured"]


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows = []
    for k in range(PLOTS):
        for treatment, mean in MEANS.items():
            light = rng.uniform(15.0, 25.0)
            height = mean + LIGHT_SLOPE * (light - 20.0) + rng.normal(0.0, 1.5)
            day = 2 + k % 3
            rows.append((f"P{len(rows) + 1:02d}", treatment, f"2024-04-{day:02d}",
                         NOTES[rng.integers(len(NOTES))], light, height))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "growth_trial.csv")
    with open(path, "w", newline="\n") as f:
        f.write("plot,treatment,sown,note,light,height_cm\n")
        for plot, treatment, sown, note, light, height in rows:
            f.write(f"{plot},{treatment},{sown},{note},{light:.1f},{height:.1f}\n")
    print(f"wrote {path} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
