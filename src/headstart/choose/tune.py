"""`headstart tune`: an Optuna study whose trials are ordinary runs.

Every trial is `pipeline.fit` writing RUN/trials/NNNN, on cached features: a frozen backbone's
features are computed once per backbone and size, so after the first probe on a candidate every
later probe on it costs a head fit. The objective is the trial's best validation accuracy (test
accuracy is recorded beside it, never optimised).

Sampler: TPE, seeded (multivariate and grouped, for the conditional space of tune_space.py).
Pruner: MedianPruner on the best validation accuracy so far after each evaluation. Why not
Hyperband: its rungs need one resource axis every trial shares, and ours differ in kind (a probe
has five evaluations, a fine-tune a head sweep and then epochs) and a study has tens of trials,
too few to fill its brackets; the median rule needs only a few finished trials to compare with.

Workers: --workers N processes on this machine, and any number of machines running the same
command with the same --storage and --study, share one study in its database; each worker asks
for its next trial itself (study_storage.py). --trials is the study's total across all of them
(complete and pruned trials count) and a re-run of the command continues it.
"""
from __future__ import annotations

import math
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..config import FitConfig, TuneConfig
from ..errors import HeadstartError
from ..log import say
from . import study_storage as storage
from .candidates import Candidate, default_candidates, parse_candidates

MIN_TRIAL_SECONDS = 20.0   # below this a trial is mostly start-up: refuse rather than run nothing
OVERHEAD_SECONDS = 10.0    # a trial's time outside its own budget (loading, building, report) until measured
MAX_FAILURES = 3           # failed trials in a row before a worker gives up (a broken setting, not bad luck)
PRUNER = {"n_startup_trials": 3, "n_warmup_steps": 1}  # compare after 3 finished trials; never on a first evaluation
# TuneConfig, and TUNED (the settings tune sets itself), are declared with every command's settings (config/).


@dataclass
class _Job:
    """What every worker process needs (pickled to each)."""

    url: str
    study_name: str
    run_dir: Path
    template: FitConfig
    modality: str
    strategies: list[str]
    candidates: list[Candidate]
    trials: int
    seed: int
    deadline: float | None            # time.time() by which the last trial must end
    trial_budget: float | None
    threads: int


def run_tune(config: TuneConfig) -> dict:
    """Run (or continue) the study; write RUN/tune.json, RUN/best.yaml and RUN/report.html."""
    import optuna

    from .. import run_lock
    from ..records import new_run_dir

    started, started_at = time.perf_counter(), time.time()  # the budget counts from the command's start
    _check_numbers(config)
    run_dir = new_run_dir(config.out, prefix="tune")
    url = storage.storage_url(config.storage, run_dir)
    if config.workers > 1 and not storage.is_shared(url):
        # concurrent writers on one SQLite file meet "database is locked" and lose trials
        raise HeadstartError(f"--workers {config.workers} needs a database the workers can share; SQLite cannot",
                             hint="give --storage postgresql://USER@HOST:PORT/DB, or --workers 1")
    storage.check_server(url)  # before anything is created
    job = _plan(config, url, run_dir, started_at)
    run_lock.hold(run_dir, "tune")  # made and owned from here, for the process's life (workers run inside it)
    with storage.guard(url):  # a server lost mid-study: one clear message, the study resumable
        study = optuna.create_study(storage=storage.open_storage(url), study_name=job.study_name,
                                    direction="maximize", load_if_exists=True)
        with storage.Reservation(url, job.study_name).held():  # not while a worker elsewhere starts a trial
            lost = storage.recover_lost_trials(study, url)
        if lost:
            say(f"trial(s) {', '.join(map(str, lost))} were left running by a killed worker: marked failed, "
                f"their settings queued again (each retried once, counted once)")
        say(f"tune {config.data}: {job.trials} trial(s) in study {job.study_name} ({_hidden(url)}), "
            f"{config.workers} worker(s) here, strategies {', '.join(job.strategies)}")
        try:
            if config.workers == 1:
                work(job, 0)
            else:
                _spawn(job, config.workers)
        finally:  # what the study holds is written even when a worker gave up or was interrupted
            result = _write_outputs(optuna.load_study(study_name=job.study_name, storage=storage.open_storage(url)),
                                    job, config, time.perf_counter() - started)
    return result


def _check_numbers(config: TuneConfig) -> None:
    config.fit.refuse_keep_learning("tune")
    if config.trials < 1:
        raise HeadstartError(f"--trials must be at least 1, got {config.trials}")
    if config.workers < 1:
        raise HeadstartError(f"--workers must be at least 1, got {config.workers}")
    least = MIN_TRIAL_SECONDS + OVERHEAD_SECONDS
    if config.budget_seconds is not None and config.budget_seconds < least:
        raise HeadstartError(f"--budget {config.budget_seconds:g}s is too small for one trial: the minimum is "
                             f"{least:g}s", hint=f"give --budget {least:g}s or more (e.g. 10m for a real search)")
    if config.trial_budget_seconds is not None and config.trial_budget_seconds < MIN_TRIAL_SECONDS:
        raise HeadstartError(f"--trial-budget {config.trial_budget_seconds:g}s is too small: the minimum is "
                             f"{MIN_TRIAL_SECONDS:g}s", hint=f"give --trial-budget {MIN_TRIAL_SECONDS:g}s or more")


def _plan(config: TuneConfig, url: str, run_dir: Path, started_at: float) -> _Job:
    """Check the data, candidates and strategies (loading the data once) before anything is created."""
    from ..modalities import modality_of
    from ..pipeline import load
    from ..zoo import resolve_backbone
    from .tune_space import backbone_facts, check_strategies

    template = replace(config.fit, data=config.data, seed=config.seed, out=None, resume=False,
                       budget_seconds=None, explain_examples=0)  # explanations of 20 trials nobody reads
    modality = modality_of(load(template))
    candidates = parse_candidates(config.candidates) if config.candidates else default_candidates(modality.name)
    for c in candidates:
        spec = resolve_backbone(c.backbone)  # an unknown name raises with a hint
        if not modality.owns(spec):
            raise HeadstartError(f"the candidate {c.name} is a {spec.modality} backbone, and {config.data} is "
                                 f"{modality.name} data", hint="list backbones of the data's kind (`headstart zoo`)")
    strategies = check_strategies(list(config.strategies or []), candidates, modality,
                                  backbone_facts(template, modality))
    trial_budget = config.trial_budget_seconds
    if trial_budget is None and config.budget_seconds is not None:
        share = config.budget_seconds / config.trials * config.workers
        trial_budget = max(MIN_TRIAL_SECONDS, min(share, config.budget_seconds - OVERHEAD_SECONDS))
    return _Job(url=url, study_name=config.study or f"tune-{_data_name(config.data)}", run_dir=run_dir.absolute(),
                template=template, modality=modality.name, strategies=strategies, candidates=candidates,
                trials=config.trials, seed=config.seed,
                deadline=started_at + config.budget_seconds if config.budget_seconds else None,
                trial_budget=trial_budget, threads=max(1, (os.cpu_count() or 1) // config.workers))


def _data_name(data: str) -> str:
    return Path(data.rstrip("/")).name or data


def _hidden(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _spawn(job: _Job, workers: int) -> None:
    import multiprocessing

    # spawn, not fork: a forked copy of a process that has started torch's thread pools can hang
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(job, i), name=f"tune-worker-{i}") for i in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    failed = [f"{p.name} (exit {p.exitcode})" for p in processes if p.exitcode != 0]
    if failed:  # as one worker's error would end the command: not a success with trials missing
        raise HeadstartError(f"worker(s) {', '.join(failed)} stopped, saying why above; the trials they were "
                             f"running are in the study as failed",
                             hint="fix what they said and run the same command again: the study continues its "
                                  "count, and a trial cut short is retried once with its settings")


def _worker(job: _Job, index: int) -> None:
    """A worker process: a HeadstartError (the server lost, trials failing) is its one line on
    stderr and exit status 2; not a traceback. The command says what to do next, once."""
    import sys

    import torch

    torch.set_num_threads(job.threads)  # not in work(): one worker runs in the caller's process, whose count stays
    try:
        work(job, index)
    except HeadstartError as e:
        print(f"tune-worker-{index}: {e.message}", file=sys.stderr)
        sys.exit(2)


def work(job: _Job, index: int) -> None:
    """One worker: until the study holds its trials or time is up, start the next trial."""
    with storage.guard(job.url):
        _work(job, index)


def _sampler_seed(seed: int, index: int, existing: int) -> int:
    """Each worker its own seed (one seed for all would start them all on the same random
    trials), and a worker that joins a study already holding trials a seed of its own too: a
    resumed study re-seeded as at its start would draw its first trials' settings again (seen:
    after a kill, the retried trial 0 and a fresh trial drew the same settings). A study run
    without interruption keeps the seeds it always had."""
    if existing == 0:
        return seed + index
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**32, index, existing]).generate_state(1)[0])


def _work(job: _Job, index: int) -> None:
    import optuna

    from ..modalities import get_modality
    from .tune_space import Space, backbone_facts

    modality = get_modality(job.modality)
    space = Space(job.template, modality, job.strategies, job.candidates, backbone_facts(job.template, modality))
    study = optuna.load_study(study_name=job.study_name, storage=storage.open_storage(job.url),
                              pruner=optuna.pruners.MedianPruner(**PRUNER))
    with warnings.catch_warnings():  # multivariate/grouped TPE is "experimental"; it is what a conditional space needs
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.TPESampler(seed=_sampler_seed(job.seed, index, len(study.trials)),
                                                   multivariate=True, group=True,
                                                   n_startup_trials=max(2, min(10, job.trials // 3)))
    reservation, failures, overhead = storage.Reservation(job.url, job.study_name), 0, [OVERHEAD_SECONDS]
    while failures < MAX_FAILURES:
        with reservation.held():
            if storage.is_shared(job.url):
                storage.recover_lost_trials(study, job.url)
            room, budget = _room(study, job, overhead[-1])
            if room == "start":
                objective = _Objective(job, space, reservation, budget, overhead)
                if not _optimize_once(study, objective):
                    continue
        if room == "done":
            return
        if room == "wait":  # the last trials run elsewhere: wait for them to finish, or to be found lost
            time.sleep(storage.HEARTBEAT_SECONDS)
            continue
        last = study.trials[-1] if objective.number is None else _frozen(study, objective.number)
        failures = failures + 1 if last.state == optuna.trial.TrialState.FAIL else 0
    raise HeadstartError(f"{MAX_FAILURES} trials in a row failed; the last: {last.user_attrs.get('error')}",
                         hint="see tune.json for each trial's error; narrow --strategies or --candidates")


def _optimize_once(study, objective: "_Objective") -> bool:
    """One trial; False when another worker took it for lost while it ran here (its heartbeat
    late on a busy machine) and failed it: its retry is the attempt that counts, not this one."""
    from optuna.trial import TrialState

    try:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
    except ValueError:  # Optuna's "Cannot tell a FAIL trial"
        if objective.number is None or _frozen(study, objective.number).state != TrialState.FAIL:
            raise
        say(f"trial {objective.number} was taken for lost by another worker while it ran here: its retry counts")
        return False
    return True


def _room(study, job: _Job, overhead: float) -> tuple[str, float | None]:
    """("start", the trial's budget), ("wait", None) or ("done", None)."""
    from optuna.trial import TrialState

    counted = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    budget = job.trial_budget
    if job.deadline is not None:
        usable = job.deadline - time.time() - overhead
        if usable < MIN_TRIAL_SECONDS:
            return "done", None  # no trial may start that cannot finish inside the study's budget
        budget = usable if budget is None else min(budget, usable)
    if counted >= job.trials:
        return "done", None
    return ("wait", None) if counted + running >= job.trials else ("start", budget)


def _frozen(study, number: int):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


class _Objective:
    """One trial: draw its settings, fit them as an ordinary run, return the best validation accuracy."""

    def __init__(self, job: _Job, space, reservation, budget: float | None, overhead: list[float]):
        self.job, self.space, self.reservation, self.budget, self.overhead = job, space, reservation, budget, overhead
        self.number = None

    def __call__(self, trial) -> float:
        import optuna

        from ..pipeline import fit
        from ..records import observe_evaluations, read_metrics
        from .tune_space import sample_config

        # whose the trial is, before anyone else may look: a retried trial starts with its lost
        # attempt's attributes (Optuna copies them), and a worker that saw that attempt's dead
        # worker on it would take the retry, running here, for lost too
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", f"{socket.gethostname()}/{os.getpid()}")
        self.reservation.release()  # the trial exists and is ours: every worker counts it now
        self.number, started = trial.number, time.perf_counter()
        trials_dir = self.job.run_dir / "trials"
        for lost in _frozen(trial.study, trial.number).system_attrs.get("retry_history", []):
            shutil.rmtree(trials_dir / f"{lost:04d}", ignore_errors=True)  # a killed attempt's half-written run
        run_dir = trials_dir / f"{trial.number:04d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        config = replace(sample_config(trial, self.space), out=str(run_dir), budget_seconds=self.budget)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("config", _saved(config))
        say(f"trial {trial.number}: {_describe(config)}")
        try:
            with observe_evaluations(_Reporter(trial)):
                result = fit(config, use_feature_cache=True)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("error", str(e) if isinstance(e, HeadstartError) else f"{type(e).__name__}: {e}")
            raise
        finally:
            # a finished trial never resumes: its checkpoint (optimizer state, a second model) is dead weight
            shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
            seconds = time.perf_counter() - started
            trial.set_user_attr("seconds", round(seconds, 3))
            rows = read_metrics(run_dir)
            if rows:  # what the trial spent outside its budget's clock: loading, building, the report
                self.overhead.append(max(self.overhead[-1], seconds - rows[-1]["wall_seconds"]))
        trial.set_user_attr("test_accuracy", result.summary["test_accuracy"])
        return float(result.summary["best_val_accuracy"])


class _Reporter:
    """Reports each validation evaluation's best accuracy so far to the trial, and prunes."""

    def __init__(self, trial):
        self.trial, self.step, self.best = trial, 0, -math.inf

    def __call__(self, row: dict) -> None:
        import optuna

        if row["split"] != "val":
            return
        self.best = max(self.best, row["accuracy"])
        self.trial.report(self.best, self.step)
        self.step += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"best validation accuracy {self.best:.4f} after {self.step} evaluation(s) is "
                                     f"below the median of earlier trials there")


def _saved(config: FitConfig) -> dict:
    """The trial's config as best.yaml holds it: as fit writes config.yaml, without out/resume."""
    return {k: v for k, v in config.to_dict().items() if k not in ("out", "resume")}


def _describe(config: FitConfig) -> str:
    shown = ("strategy", "backbone", "image_size", "scratch_model", "lr", "weight_decay", "epochs", "augment",
             "layer_decay", "freeze_depth")
    defaults = {f.name: f.default for f in fields(FitConfig)}
    parts = [f"{k}={getattr(config, k):.3g}" if isinstance(getattr(config, k), float) else f"{k}={getattr(config, k)}"
             for k in shown if getattr(config, k) != defaults.get(k) or k == "strategy"]
    return " ".join(parts)


def _write_outputs(study, job: _Job, config: TuneConfig, wall_seconds: float) -> dict:
    """RUN/tune.json (every trial), RUN/best.yaml (the best trial's settings), RUN/report.html."""
    from optuna.trial import TrialState

    from ..files import write_json, write_yaml
    from ..report.tune import build_tune_report
    from .tune_space import plain_params

    trials = study.get_trials(deepcopy=False)
    origin = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": plain_params(t.params),
             "test_accuracy": t.user_attrs.get("test_accuracy"), "seconds": t.user_attrs.get("seconds"),
             "finished_after_seconds": round((t.datetime_complete - origin).total_seconds(), 3)
             if t.datetime_complete and origin else None,
             "run_dir": t.user_attrs.get("run_dir"), "worker": t.user_attrs.get("worker"),
             "retry_of": t.system_attrs.get("failed_trial"), "error": t.user_attrs.get("error")} for t in trials]
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    best_yaml = job.run_dir / "best.yaml"
    if best is not None:
        write_yaml(best_yaml, best.user_attrs["config"])
    result = {
        "data": config.data, "study": job.study_name, "storage": _hidden(job.url), "trials_wanted": job.trials,
        "workers": config.workers, "strategies": job.strategies, "candidates": [c.name for c in job.candidates],
        "seed": job.seed, "budget_seconds": config.budget_seconds, "trial_budget_seconds": job.trial_budget,
        "sampler": "TPE (multivariate, grouped), seeded", "pruner": f"median {PRUNER}",
        "wall_seconds": round(wall_seconds, 3), "counts": counts,
        "best": None if best is None else {
            "number": best.number, "value": best.value, "test_accuracy": best.user_attrs.get("test_accuracy"),
            "params": plain_params(best.params), "config": best.user_attrs["config"],
            "run_dir": best.user_attrs.get("run_dir"), "best_yaml": str(best_yaml),
            "rerun": f"headstart fit --config {best_yaml}"},
        "trials": rows, "run_dir": str(job.run_dir),
    }
    write_json(job.run_dir / "tune.json", result)
    result["report"] = str(build_tune_report(job.run_dir))
    return result
