"""--refit: the delivered model learns from every label it may.

Validation exists to choose (the strategy, the probe's C, TF-IDF's n-grams and C, an epoch
count). Once the choice is made, the labels it held out are labels the delivered model could
learn from: AutoGluon's `refit_full` refits on train + validation, and on small data that is
worth points (720 short texts: scikit-learn's char TF-IDF scored 0.560 on the 520 a split
leaves and 0.627 on all 720). Test is never trained on: the reported test figure stays held
out, and the validation figure reported is the train-only one the choice was made by.

Where a refit is cheap it is the default (--refit auto): a logistic head on cached features
(the probe) and TF-IDF are one more solve at the chosen C. Strategies that train a backbone
(scratch, lp-ft, finetune, lora) would train a second time, as long as the first: auto keeps
the train-only model there, and --refit yes says in the run that they do not refit yet. One
exception costs a solve: when fine-tuning never beats the head it started from, the delivered
model is that head on the pretrained backbone, and it is refit as the probe's is.
"""
from __future__ import annotations

REFIT_CHOICES = ("auto", "yes", "no")


def wants_refit(config, cheap: bool) -> bool:
    """Whether a strategy that can refit (cheap: in seconds) should, under --refit."""
    choice = getattr(config, "refit", "auto")
    return choice == "yes" or (choice == "auto" and cheap)


def refit_figures(n_train: int, n_val: int, chosen_by: float) -> dict:
    """The summary's record of a refit model: what it learnt from, and the train-only validation
    figure that chose its settings."""
    return {"delivered": f"refit on train+val ({n_train + n_val} items), settings chosen on validation "
                         f"({chosen_by:.4f} trained on train alone)",
            "refit": {"items": int(n_train + n_val), "train": int(n_train), "val": int(n_val),
                      "chosen_val_accuracy": round(float(chosen_by), 6)}}


def deliver_held_refit(held: tuple, head_layer) -> dict:
    """Write a refit solved and held beside a train-only head (fit_logistic_head(hold=True)) into
    `head_layer`; returns its summary figures (what the run now says it delivers)."""
    refitted_head, figures = held
    refitted_head.write_into(head_layer)
    return figures


def delivered_line(outcome: dict, config, strategy: str, n_train: int) -> str:
    """What the run delivers, in one line, for the summary: a refitting strategy has said so in
    its outcome; any other delivered what it trained on train alone."""
    if outcome.get("delivered"):
        return outcome["delivered"]
    line = f"trained on train ({n_train} items)"
    if getattr(config, "refit", "auto") == "yes":
        line += f"; --refit yes: {strategy} has no refit yet (it would train a second time)"
    return line
