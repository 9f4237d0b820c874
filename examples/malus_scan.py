"""Malus' law, scripted: turn a polariser mount 0-180 deg in 10 deg steps, read a power meter.

Runs on the simulated optics of daqhub's demo lab (an Elliptec ELL14 rotation mount and a
Newport 1830-C behind a polariser), so it needs no hardware; point the two ports at real
ones to run it on a bench. Prints the points table, fits P = a + b cos^2(theta - theta0) and
saves a plot next to the session data.

    python examples/malus_scan.py [--output-dir data] [--mount-flavor v2|v4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import daqhub

LAB = """
[daqhub]
output_dir = "{output_dir}"

[v2]
storage = "hdf5"

[v4]
storage = "arrow"

[[v2.instruments]]
id = "power"
type = "newport.1830c"
port = "sim://newport1830c?power=0.0005&noise=0.002&polariser=malus:0&extinction=0.02"
wavelength_nm = 633
poll_hz = 5

[[{mount_flavor}.instruments]]
id = "rotator"
type = "elliptec.ell14"
port = "sim://elliptec?name=malus&devices=0:ELL14&speed_scale=4"
address = 0
poll_hz = 4
"""


def fit_malus(angle_deg: np.ndarray, power: np.ndarray) -> tuple[float, float, float]:
    """Least squares P = a + b cos(2(theta - theta0)); returns (a + b, a - b, theta0 in deg)."""
    t = np.radians(angle_deg)
    basis = np.column_stack([np.ones_like(t), np.cos(2 * t), np.sin(2 * t)])
    (a, c, s), *_ = np.linalg.lstsq(basis, power, rcond=None)
    b = float(np.hypot(c, s))
    return a + b, a - b, float(np.degrees(np.arctan2(s, c)) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="data")
    parser.add_argument("--mount-flavor", choices=["v2", "v4"], default="v2")
    args = parser.parse_args()
    out = Path(args.output_dir).resolve()
    lab_text = LAB.format(output_dir=out.as_posix(), mount_flavor=args.mount_flavor)
    with daqhub.open_lab(lab_text, meta={"experiment": "Malus' law"}) as lab:
        table = lab.scan("rotator", range(0, 181, 10), read=["power"], settle=0.2)
        session_dir = next(iter(lab.output_dirs().values()))
    columns = ["step", "rotator", "rotator.readback", "power.power"]
    print("".join(f"{c:>18}" for c in columns))
    for row in table.select(columns).to_pylist():
        print("".join(f"{row[c]:>18.6g}" for c in columns))
    angle = np.asarray(table["rotator.readback"])
    power = np.asarray(table["power.power"])
    p_max, p_min, theta0 = fit_malus(angle, power)
    print(f"fit: P_max = {p_max:.4g} W, P_min = {p_min:.3g} W, theta0 = {theta0:.2f} deg")

    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(angle, power * 1e3, "o", label="measured")
    fine = np.linspace(0, 180, 361)
    ax.plot(fine, (p_min + (p_max - p_min) * np.cos(np.radians(fine - theta0)) ** 2) * 1e3,
            label="cos² fit")
    ax.set_xlabel("mount angle (deg)")
    ax.set_ylabel("power (mW)")
    ax.set_title("Malus' law")
    ax.legend()
    plot = session_dir / "malus_scan.png"
    fig.savefig(plot, dpi=100)
    print(f"plot: {plot}")


if __name__ == "__main__":
    main()
