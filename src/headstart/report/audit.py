"""The audit report: what `headstart audit` flagged, in a gallery with each item's given and
suggested label, from RUN/audit.json and the thumbnails beside it (a pure function of the run
folder, like every report)."""
from __future__ import annotations

from pathlib import Path

from headstart.files import atomic_write_text, read_json

from . import html


def build_audit_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html for an audit run directory."""
    run_dir = Path(run_dir)
    found = read_json(run_dir / "audit.json")
    page = html.environment().get_template("audit.html.j2").render(
        title=f"headstart audit: {found.get('data')}", run_name=run_dir.name, audit=found)
    atomic_write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
