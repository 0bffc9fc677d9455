"""HTML for run reports: the Jinja2 templates in templates/, rendered with autoescape on.

The templates hold all markup and wording; this module holds the formatting filters and the few
facts that take more than a lookup to derive from the records. Autoescaping covers every value
that came from a user or a file (class names, texts, data paths, config, verdict sentences), so
nothing here escapes by hand and nothing is marked safe.

Words that depend on what was classified ("px" or "tokens", "image" or "text") are read from
the run records rather than decided here, so a new kind of input needs no change to the report.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from headstart.summary import fit_summary  # the templates hold the on-disk form; these read its fields

TEMPLATES = Path(__file__).with_name("templates")
IMBALANCE_WARNING_RATIO = 3.0
NO_EVALUATIONS = "no evaluations recorded"
SETTINGS = ("data", "target_accuracy", "target_source", "budget_seconds_per_arm", "seeds",
            "noise", "decode_seconds")

# Runs recorded before summary.json carried "words" were all image runs.
IMAGE_WORDS = {"input_unit": "px", "skipped": "unreadable image file(s)", "example": "image"}


# -- filters ---------------------------------------------------------------------------------

def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{float(value) * 100:.{digits}f} %"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value >= 600:
        return f"{value:.0f} s ({value / 60:.1f} min)"
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def flat_items(mapping: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(key, text) pairs for a key/value table. Nested dicts (machine.versions) read better as
    dotted keys than as JSON blobs; other non-strings are shown as JSON."""
    out = []
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += flat_items(v, key + ".")
        else:
            out.append((key, v if isinstance(v, str) else json.dumps(v, default=str)))
    return out


# -- facts the templates ask for -------------------------------------------------------------

def words(summary: Mapping) -> dict[str, str]:
    given = fit_summary(summary).words
    given = given if isinstance(given, dict) else {}
    return {k: str(given.get(k) or default) for k, default in IMAGE_WORDS.items()}


def data_notes(summary: Mapping) -> list[str]:
    """Sentences the data pipeline wrote for the reader (e.g. how many texts were truncated)."""
    notes = fit_summary(summary).data_notes or []
    if isinstance(notes, str):
        notes = [notes]
    return [str(n) for n in notes if n]


def imbalance(summary: Mapping) -> dict | None:
    """The training-set skew when it is large enough to distort plain accuracy, else None."""
    skew = fit_summary(summary).train_imbalance or {}
    ratio = skew.get("imbalance_ratio")
    if ratio is None or ratio < IMBALANCE_WARNING_RATIO:
        return None
    counts = skew.get("class_counts") or {}
    if not counts:
        return {"ratio": ratio, "most": None}
    most, least = max(counts, key=counts.get), min(counts, key=counts.get)
    return {"ratio": ratio, "most": most, "most_count": counts[most],
            "least": least, "least_count": counts[least]}


def class_order(summary: Mapping) -> list[str]:
    # The run's own class order (the confusion matrix's), not per_class's key order.
    summary = fit_summary(summary)
    per_class = summary.per_class or {}
    return [c for c in (summary.classes or []) if c in per_class] or list(per_class)


def explains_text(explained: dict) -> bool:
    """Whether an explanations record highlights texts (rather than drawing heat-maps)."""
    return any("segments" in e for item in explained.get("items") or [] for e in item.get("explanations") or [])


def heat_style(score: float) -> str:
    """The background of a highlighted word: green for evidence for the class, red against,
    as strong as the score (in [-1, 1])."""
    score = max(-1.0, min(1.0, float(score)))
    colour = "0, 158, 115" if score >= 0 else "213, 94, 0"
    return f"background: rgba({colour}, {abs(score) * 0.75:.2f})"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        # Beside this module, so an editable install reads the source tree; a wheel needs the
        # templates listed as package data.
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template is HTML
        undefined=StrictUndefined,  # a misspelt name fails the build instead of rendering blank
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, seconds=seconds, number=number, flat_items=flat_items, heat_style=heat_style)
    env.globals.update(words=words, data_notes=data_notes, imbalance=imbalance,
                       class_order=class_order, no_evaluations=NO_EVALUATIONS, explains_text=explains_text)
    return env


# -- pages -----------------------------------------------------------------------------------

def fit_page(*, run_name: str, summary: dict, rows: list[dict], config_text: str | None,
             images: dict[str, str | None], explained: dict | None = None, explained_base: str = "") -> str:
    """`summary`: summary.json's on-disk form ({} for a run without one), plus the deploy table."""
    recorded = fit_summary(summary)
    title = f"headstart fit: {recorded.strategy or 'run'} on {recorded.data or run_name}"
    return environment().get_template("fit.html.j2").render(
        title=title, run_name=run_name, summary=summary, rows=rows, config_text=config_text,
        images=images, has_val=any(r.get("split") == "val" for r in rows), explained=explained,
        explained_base=explained_base)


def explain_page(*, run_name: str, explained: dict) -> str:
    return environment().get_template("explain.html.j2").render(
        title="headstart explain", run_name=run_name, explained=explained)


def comparison_page(*, run_name: str, comparison: dict, images: dict[str, str | None],
                    best_summary: dict | None, links: dict[str, str], has_evaluations: bool,
                    explained: dict | None = None, explained_base: str = "") -> str:
    return environment().get_template("comparison.html.j2").render(
        title=f"headstart compare: {comparison.get('data') or run_name}", run_name=run_name,
        comparison=comparison, images=images, best_summary=best_summary, links=links,
        has_evaluations=has_evaluations, explained=explained, explained_base=explained_base,
        settings={k: comparison[k] for k in SETTINGS if k in comparison})



def record_page(run_dir: str | Path, record: str, *, draw, figure: str, title, key: str, **context) -> Path:
    """RUN/report.html for a command whose result is one JSON record in its folder (RUN/rank.json,
    RUN/simulate_al.json): `draw(result, path)` makes the figure beside it, `title(result)` names
    the page, and `RECORD.html.j2` renders with the result as `key`."""
    from headstart.files import atomic_write_text, read_json

    run_dir = Path(run_dir)
    result = read_json(run_dir / f"{record}.json")
    draw(result, run_dir / figure)
    page = environment().get_template(f"{record}.html.j2").render(
        title=title(result), run_name=run_dir.name, figure=figure, **{key: result}, **context)
    atomic_write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
