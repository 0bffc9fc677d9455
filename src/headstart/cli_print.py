"""What the `headstart` commands print: the results of fit, compare and simulate-al."""
from __future__ import annotations

from .log import is_main_process
from .summary import fit_summary


def print_fit_summary(result) -> None:
    from .eval_budget import sampled_parts  # with the data stages: not on every command's start

    s = fit_summary(result.summary)
    if not is_main_process():
        return
    print(f"{s.strategy} on {s.data} with {s.backbone} ({s.weights})")
    print(f"  test accuracy {s.test_accuracy:.4f}   macro-F1 {s.macro_f1:.4f}   "
          f"best val {s.best_val_accuracy:.4f}")
    if s.delivered:  # --refit: the model delivered, and what its validation figure was measured on
        print(f"  delivered: {s.delivered}")
    sampled = sampled_parts(s.get("evaluation_sized"))
    if sampled:  # --budget cut a held-out pass to a stratified sample (eval_budget.py)
        print(f"  evaluated: {sampled} (stratified samples, to keep --budget)")
    print(f"  train {s.train_seconds:.1f} s   wall {s.wall_seconds:.1f} s   "
          f"peak RSS {s.peak_rss_mb:.0f} MB")
    ratio = s.train_imbalance["imbalance_ratio"]
    if ratio >= 3 and s.balance is None:
        print(f"  note: the training classes are imbalanced ({ratio:.1f}:1); see macro-F1 and per-class figures, "
              f"and try --balance auto or --synthesize auto")
    if s.balance is not None:
        print(f"  balance: {s.balance['mode']} (--balance {s.balance['requested']}): {s.balance['reason']}")
    for what, chosen in (s.auto or {}).items():  # --backbone auto / --strategy auto
        print(f"  {what} auto: {chosen.get('candidate') or chosen.get('strategy')}: {chosen['reason']}")
    for part, record in (("adaptation", s.adaptation), ("continual", s.continual)):  # --adapt POOL, --from RUN
        if (record or {}).get("headline"):
            print(f"  {part}: {record['headline']}")
    if s.synthetic:
        print(f"  synthetic: {s.synthetic['total']} training sample(s) by {s.synthetic['method']}")
    print(f"  run: {result.run_dir}")


def print_study(study: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    labels = study["labels"]
    table = Table(title=f"{study['data']}: test accuracy by labels used (median of {study['seeds']} seed(s))")
    table.add_column("method")
    for n in labels:
        table.add_column(str(n), justify="right")
    for name, m in study["methods"].items():
        table.add_row(name, *[f"{a:.3f}" for a in m["median"]])
    console = Console()
    console.print(table)
    console.print(f"[bold]{study['sentence']}[/bold]")
    console.print(f"report: {study['report']}", soft_wrap=True)  # a path stays whole on one line


def print_comparison(c: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{c['data']}: time to {c['target_accuracy']:.3f} validation accuracy "
                        f"({c['target_source']})")
    for col in ("arm", "backbone", "best val", "test acc", "train s", "time to target"):
        table.add_column(col, justify="left" if col in ("arm", "backbone") else "right")
    for a in c["arms"]:
        ttt = a["time_to_target_seconds"]
        unit = a.get("input_unit", "px")
        size = "" if a["input_size"] is None else f" @{a['input_size']}{'' if unit == 'px' else ' '}{unit}"
        table.add_row(a["name"], f"{a['backbone']}{size}", f"{a['best_val_accuracy']:.3f}",
                      f"{a['test_accuracy']:.3f}", f"{a['train_seconds']:.1f}",
                      f"{ttt:.1f} s" if ttt is not None else "never within budget")
    console = Console()
    if c.get("auto"):  # --backbone auto, ranked once for every arm
        console.print(f"backbone auto: {c['auto']['backbone']['candidate']}: {c['auto']['backbone']['reason']}")
    console.print(table)
    console.print(f"[bold]{c['verdict_sentence']}[/bold]")
    if c.get("label_curve"):  # compare --label-fractions
        console.print(c["label_curve"]["sentence"])
    if c.get("report"):
        console.print(f"report: {c['report']}", soft_wrap=True)  # a path stays whole on one line
