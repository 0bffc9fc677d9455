"""Evaluation sized to --budget: the validation and the test pass take at most a share of it each.

An evaluation pass runs the whole model over every held-out item, and on a slow backbone the two
passes can outgrow a short budget by themselves: bbc-news on MiniLM beside a competing process,
284 + 334 texts at ~8 texts/s, was 75 s of a 60 s budget (BENCHMARKS 17.3), and no cut in training
could keep that promise. So under --budget a fit measures, right before training, how fast this
model runs on this machine now (one batch of held-out items: a loaded machine is measured as
loaded), and where a full pass of a part would take more than its share of the budget, that part
becomes a stratified sample of the size that fits: every class in its proportion, never fewer than
MIN_PER_CLASS items per class in all. The run records what it kept and says it; splits.json still
holds the whole split. Without --budget nothing is cut.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .data.ranks import gather
from .data.split import stratified_order
from .log import say

# Each pass's share of --budget: the two together at most half; training and the closing parts keep the rest
EVAL_SHARE = 0.25
MIN_PER_CLASS = 5
PACE_ITEMS = 16   # held-out items timed to learn the pace (one inference batch)


@dataclass
class EvalSizing:
    """What a budgeted fit kept of its held-out parts, and the pace that decided it."""

    seconds_per_item: float
    kept: dict[str, tuple[int, int]] = field(default_factory=dict)  # part -> (kept, of), for parts cut

    def figures(self) -> dict:
        if not self.kept:
            return {}
        return {"evaluation_sized": {"seconds_per_item": round(self.seconds_per_item, 4), "share": EVAL_SHARE,
                                     **{part: {"kept": k, "of": n} for part, (k, n) in self.kept.items()}}}

    def sentence(self) -> str | None:
        if not self.kept:
            return None
        cut = sampled_parts(self.figures()["evaluation_sized"])
        return (f"evaluating {cut} items (stratified) to keep --budget: a full pass takes "
                f"{self.seconds_per_item:.3f} s an item here, over {EVAL_SHARE:.0%} of the budget; "
                f"a larger --budget evaluates on all of them")


def sampled_parts(sized: dict | None) -> str:
    """A summary's `evaluation_sized` in words: "val on 119 of 284, test on 119 of 334" ("" if none)."""
    return ", ".join(f"{part} on {cut['kept']} of {cut['of']}" for part, cut in (sized or {}).items()
                     if part in ("val", "test"))


def seconds_per_item(model, part) -> float:
    """The model's inference pace on this machine now, on the first items of `part` (after a warm-up)."""
    sample = part.subset(np.arange(min(PACE_ITEMS, len(part))))
    model.warm_up(sample)  # one-off costs (kernel loading, allocator) are not the pace
    started = time.perf_counter()
    model.logits(sample)
    return (time.perf_counter() - started) / max(len(sample), 1)


def items_that_fit(budget_seconds: float, per_item: float, num_classes: int) -> int:
    """How many items one pass may take: its share of the budget at this pace, and the floor."""
    return max(int(EVAL_SHARE * budget_seconds / max(per_item, 1e-9)), MIN_PER_CLASS * num_classes)


def sized_for_budget(model, parts: tuple, budget_seconds: float | None, seed: int, *, trained: bool,
                     standalone: bool) -> tuple[tuple, dict]:
    """A fit's held-out parts sized to the command's --budget (`budget_seconds`: the whole budget,
    not what a choice before training left of it), said aloud: (parts, the summary's figures).
    Only the test part of a model already trained (its validation chose it already); nothing of a
    standalone model (TF-IDF: it infers nothing before it is fitted, and its passes take milliseconds)."""
    if standalone:
        return parts, {}
    parts, sizing = size_to_budget(model, parts, budget_seconds, seed, names=("test",) if trained else ("val", "test"))
    if sizing is None:
        return parts, {}
    if sizing.sentence():
        say(sizing.sentence())
    return parts, sizing.figures()


def size_to_budget(model, parts: tuple, budget_seconds: float | None, seed: int, *,
                   names: tuple[str, ...] = ("val", "test")) -> tuple[tuple, EvalSizing | None]:
    """(train, val, test) with the parts in `names` cut to what their share of `budget_seconds`
    affords (train is never cut); None for the sizing when there is no budget or nothing to time."""
    train, *held = parts
    by_name = dict(zip(("val", "test"), held))
    timed = next((by_name[n] for n in names if len(by_name[n])), None)
    if budget_seconds is None or timed is None:
        return parts, None
    # every rank decides on the slowest rank's pace: all of them must evaluate the same items
    sizing = EvalSizing(max(gather(seconds_per_item(model, timed))))
    for name in names:
        part = by_name[name]
        most = items_that_fit(budget_seconds, sizing.seconds_per_item, len(np.unique(part.labels)) or 1)
        if len(part) > most:
            keep = np.sort(stratified_order(part.labels, seed)[:most])  # in the part's own order
            by_name[name] = part.subset(keep)
            sizing.kept[name] = (most, len(part))
    return (train, by_name["val"], by_name["test"]), sizing
