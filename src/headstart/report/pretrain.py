"""The report of a `headstart pretrain` run: its SSL loss curve and what it became, read from the
run directory alone (its summary and metrics, through Run), like every report."""
from __future__ import annotations

from pathlib import Path

from headstart.files import atomic_write_text
from headstart.report.html import environment
from headstart.report.plots import DPI, PALETTE, STYLE
from headstart.run import Run
from headstart.summary import PretrainSummary

REPORT = "report.html"
LOSS_FIGURE = "ssl_loss.png"


def build_pretrain_report(run_dir: str | Path) -> Path:
    run = Run(run_dir)
    summary = run.summary
    if not isinstance(summary, PretrainSummary):  # one written before it said "command": pretrain
        summary = PretrainSummary.from_dict(summary)
    rows = run.metrics
    figure = plot_loss(rows, run.path / LOSS_FIGURE, summary.method or "") if rows else None
    page = environment().get_template("pretrain.html.j2").render(
        title=f"headstart pretrain: {summary.method} on {summary.data}", run_name=run.name,
        summary=summary.to_dict(), figure=figure)
    atomic_write_text(run.path / REPORT, page)
    return run.path / REPORT


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
