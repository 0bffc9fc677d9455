"""`headstart demo`: transfer vs scratch on the built-in elpv solar cells, no network needed.

Real images and few labels are the case transfer learning is for: the probe on packaged
ImageNet EfficientNet-Lite0 features against a ResNet-9 trained from scratch, on the same
split, with the comparison table, the verdict and the report. About 3 minutes on 2 cores.
"""
from __future__ import annotations

from .compare import run_compare
from .config import CompareConfig, FitConfig

DEMO_ARMS = ("probe", "scratch")
DEMO_BUDGET_SECONDS = 100.0  # per arm; the scratch arm uses all of it on 2 CPU cores


def demo_notice(budget_seconds: float) -> str:
    """What the demo runs, and the data's licence, said before it starts."""
    return ("headstart demo: ELPV solar cells (CC BY-NC-SA 4.0), functional vs defective;\n"
            f"arms {', '.join(DEMO_ARMS)} on one split, at most {budget_seconds:.0f} s each.")


def run_demo(out: str | None = None, train_per_class: int | None = None, image_size: int | None = None,
             budget_seconds: float = DEMO_BUDGET_SECONDS) -> dict:
    """The comparison (see compare.run_compare); the CLI prints it."""
    shared = FitConfig(data="elpv", backbone="tf_efficientnet_lite0", train_per_class=train_per_class,
                       image_size=image_size)
    config = CompareConfig(data="elpv", arms=DEMO_ARMS, scratch_model="resnet9", budget_seconds=budget_seconds,
                           out=out, fit=shared)
    return run_compare(config)
