"""`headstart demo`: the built-in elpv solar-cell data, packaged ImageNet weights, no network."""
from __future__ import annotations

from .config import FitConfig
from .pipeline import fit


def run_demo(out: str | None = None) -> int:
    from .cli import _print_fit_summary

    config = FitConfig(data="elpv", backbone="tf_efficientnet_lite0", strategy="probe",
                       image_size=224, out=out)
    _print_fit_summary(fit(config))
    return 0
