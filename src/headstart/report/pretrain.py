"""The report of a `headstart pretrain` run: its SSL loss curve and what it became, read from the
run directory alone (summary.json, metrics.jsonl), like every report."""
from __future__ import annotations

import json
from pathlib import Path

from headstart.files import atomic_write_text
from headstart.report.html import environment
from headstart.report.plots import DPI, PALETTE, STYLE

REPORT = "report.html"
LOSS_FIGURE = "ssl_loss.png"


def build_pretrain_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = _rows(run_dir)
    figure = plot_loss(rows, run_dir / LOSS_FIGURE, summary.get("method", "")) if rows else None
    page = environment().get_template("pretrain.html.j2").render(
        title=f"headstart pretrain: {summary.get('method')} on {summary.get('data')}", run_name=run_dir.name,
        summary=summary, figure=figure)
    atomic_write_text(run_dir / REPORT, page)
    return run_dir / REPORT


def plot_loss(rows: list[dict], path: Path, method: str) -> str:
    """The loss of every step (thin) and each epoch's mean (dots) against training seconds."""
    import io

    import matplotlib.pyplot as plt

    from headstart.files import atomic_write_bytes

    steps = [r for r in rows if r.get("split") == "train"]
    epochs = [r for r in rows if r.get("split") == "epoch"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ax.plot([r["train_seconds"] for r in steps], [r["loss"] for r in steps], color=PALETTE[0], lw=0.8,
                alpha=0.6, label="each step")
        if epochs:
            ax.plot([r["train_seconds"] for r in epochs], [r["loss"] for r in epochs], "o-", color=PALETTE[1],
                    label="epoch mean")
        ax.set_xlabel("training seconds")
        ax.set_ylabel(f"{method} loss")
        ax.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path.name


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
