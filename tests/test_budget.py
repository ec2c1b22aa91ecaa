"""`--budget`: parsing, the planner's arithmetic, the schedule over total_steps, a run that stops
mid-epoch at total_steps, and a budgeted run whose resume replays the recorded plan."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.training.budget import (
    MIN_STEPS,
    BudgetClock,
    BudgetPlan,
    Measured,
    budget_seconds,
    check_enough,
    margin_seconds,
    minimum_seconds,
    plan_steps,
    replan_steps,
)
from cnnlab.training.config import TrainConfig, load_config, parse_budget, resolve_config
from cnnlab.training.plan import planned_steps, warmup_steps
from cnnlab.training.schedule import lr_factor, steps_in_epoch

TINY = "input(1x28x28) conv(4,3) relu maxpool(2) flatten fc(10)"
# The tiny model on 256 shapes images, 8 steps an epoch: a real budget run in seconds.
TINY_RUN = {"model": TINY, "data": "shapes", "train_size": 256, "test_size": 64, "batch_size": 32}
# The tiny model on 64 shapes images at batch 16: 4 steps an epoch.
FOUR_STEP_EPOCHS = {
    "model": TINY,
    "data": "shapes",
    "train_size": 64,
    "test_size": 32,
    "batch_size": 16,
}


# --- parsing and configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("60", (60.0, "s")),
        ("90s", (90.0, "s")),
        (" 2.5 S ", (2.5, "s")),
        ("1.25E", (1.25, "E")),
        ("1.25e", (1.25, "E")),
        ("1e2", (100.0, "s")),
        ("", None),
    ],
)
def test_budget_texts_parse(text, parsed):
    assert parse_budget(text) == parsed


@pytest.mark.parametrize("text", ["abc", "0", "-5", "E", "nanE", "inf", "1.25x", "5 min"])
def test_bad_budgets_are_config_errors_with_examples(text):
    with pytest.raises(ConfigError, match=r"budget must be seconds .*1\.25E"):
        resolve_config({"budget": text})


def test_budget_with_epochs_is_one_wish_too_many():
    with pytest.raises(ConfigError, match="give one or the other"):
        resolve_config({"budget": "60"}, {"epochs": 3})


def test_budget_needs_one_process():
    with pytest.raises(ConfigError, match="drop --nproc"):
        resolve_config({"budget": "60", "nproc": 2, "force_nproc": True})


def test_a_planned_budget_round_trips_through_config_toml(tmp_path):
    """The plan (epochs and total_steps beside the budget) reads back as it was written."""
    planned = resolve_config(
        {"budget": "1.25E"},
        {"epochs": 3, "total_steps": 1234, "budget_seconds": 18.9, "e_seconds": 15.12},
    )
    path = tmp_path / "config.toml"
    path.write_text(planned.to_toml())
    assert load_config(path) == planned


def test_budget_seconds_resolves_e():
    assert budget_seconds("1.25E", 16.0) == pytest.approx(20.0)
    assert budget_seconds("90s", 16.0) == 90.0


# --- the planner's arithmetic ------------------------------------------------------------


def _cost(steps: int, seconds: float, m: Measured, steps_per_epoch: int) -> float:
    """Wall seconds the plan expects: what is spent, the steps, each epoch's end, the finish."""
    epochs = math.ceil(steps / steps_per_epoch)
    return m.spent + steps * m.step + epochs * m.epoch_end + m.finish + margin_seconds(m)


@pytest.mark.parametrize("seconds", [5.0, 18.75, 60.0, 601.3])
@pytest.mark.parametrize("steps_per_epoch", [7, 469])
@pytest.mark.parametrize("spent", [0.9, 25.0])
def test_the_plan_fills_the_budget_and_no_more(seconds, steps_per_epoch, spent):
    m = Measured(step=0.0109, spent=spent, finish=1.2, epoch_end=0.08)
    steps = plan_steps(seconds, m, steps_per_epoch)
    assert steps == 0 or _cost(steps, seconds, m, steps_per_epoch) <= seconds + 1e-9
    assert _cost(steps + 1, seconds, m, steps_per_epoch) > seconds


def test_more_spent_or_slower_steps_plan_fewer_steps():
    m = Measured(step=0.01, spent=1.0, finish=1.0)
    base = plan_steps(20.0, m, 100)
    assert plan_steps(20.0, Measured(step=0.01, spent=3.0, finish=1.0), 100) < base
    assert plan_steps(20.0, Measured(step=0.02, spent=1.0, finish=1.0), 100) < base
    assert plan_steps(0.5, m, 100) == 0  # already over: nothing, not a negative count


def test_a_slow_start_keeps_more_for_the_exit():
    assert margin_seconds(Measured(step=0.01, spent=1.0, finish=1.0)) == 0.4
    assert margin_seconds(Measured(step=0.01, spent=30.0, finish=1.0)) == pytest.approx(4.5)


def test_a_budget_too_short_names_the_least_that_works():
    m = Measured(step=0.05, spent=2.0, finish=1.0, e=15.0)
    seconds = 4.0
    plan = BudgetPlan("4", seconds, plan_steps(seconds, m, 100), 100, m)
    with pytest.raises(ConfigError, match=r"too short.*give --budget (\d+)s = [\d.]+E or more"):
        check_enough(plan)
    least = math.ceil(minimum_seconds(m))
    assert plan_steps(least, m, 100) >= MIN_STEPS  # the advice works
    check_enough(BudgetPlan(f"{least}", least, plan_steps(least, m, 100), 100, m))


def test_the_plan_line_says_what_was_measured():
    m = Measured(step=0.0109, spent=0.9, finish=1.2, e=15.1)
    line = BudgetPlan("1.25E", 18.875, 1530, 469, m).line()
    assert line.startswith("budget: 1.25E = 18.9 s (E = 15.1 s measured here)")
    assert "1,530 steps of 10.9 ms = 3.3 epochs" in line


def _replan_cost(done: int, more: int, step: float, spent: float, plan: BudgetPlan) -> float:
    """Wall seconds a re-plan expects: spent, the steps left, each epoch end still ahead, the end."""
    m, per_epoch = plan.measured, plan.steps_per_epoch
    ends = math.ceil((done + more) / per_epoch) - (done - 1) // per_epoch
    return spent + more * step + ends * m.epoch_end + m.finish + margin_seconds(m)


@pytest.mark.parametrize("done", [1, 155, 468, 469, 600])
@pytest.mark.parametrize("step", [0.0182, 0.0246])
def test_a_replan_fills_what_is_left_of_the_budget_and_no_more(done, step):
    m = Measured(step=0.0237, spent=3.4, finish=1.1, epoch_end=0.15)
    plan = BudgetPlan("23.6", 23.6, 774, 468, m)
    spent = 3.4 + done * 0.022
    total = replan_steps(plan, done, step, spent)
    assert _replan_cost(done, total - done, step, spent, plan) <= 23.6 + 1e-9
    assert _replan_cost(done, total - done + 1, step, spent, plan) > 23.6


def test_a_replan_follows_the_loops_speed_and_a_run_out_of_time_ends_at_once():
    m = Measured(step=0.0237, spent=3.4, finish=1.1)
    plan = BudgetPlan("23.6", 23.6, 774, 468, m)
    faster, slower = replan_steps(plan, 155, 0.020, 7.0), replan_steps(plan, 155, 0.028, 7.0)
    assert faster > 774 > slower > 155
    assert replan_steps(plan, 155, 0.024, 30.0) == 156  # over the budget already: one more step


def test_a_replan_at_the_warm_ups_end_leaves_every_learning_rate_so_far_and_the_next():
    """The warm-up is fixed in steps and the decay starts at the peak whatever the total: the
    schedule a re-planned run follows is the planned one up to and including the step after."""
    asked = resolve_config({"total_steps": 774, "epochs": 2})
    planned = dataclasses.replace(asked, warmup_steps=warmup_steps(asked, 468))
    replanned = dataclasses.replace(planned, total_steps=900, epochs=2)
    warmup = planned.warmup_steps
    assert warmup == warmup_steps(replanned, 468) == round(774 / 5)
    for step in range(warmup + 1):
        assert lr_factor(replanned, step, 468) == lr_factor(planned, step, 468)
    assert lr_factor(replanned, warmup, 468) == 1.0
    assert lr_factor(replanned, 899, 468) == min(lr_factor(replanned, s, 468) for s in range(900))


# --- the schedule over total_steps ---------------------------------------------------------


def test_onecycle_over_total_steps_warms_up_a_fifth_and_ends_at_zero():
    config = TrainConfig(epochs=3, total_steps=250)  # 100 steps an epoch: the last has 50
    factors = [lr_factor(config, step, 100) for step in range(251)]
    assert warmup_steps(config, 100) == 50
    assert max(factors) == factors[49] == 1.0  # the peak ends the warm-up
    assert factors[250] == 0.0  # the step after the last: the schedule has run out
    assert all(a > b for a, b in zip(factors[50:250], factors[51:251], strict=True))
    assert [steps_in_epoch(config, e, 100) for e in range(4)] == [100, 100, 50, 0]


def test_without_total_steps_the_schedule_is_unchanged():
    config = TrainConfig(epochs=3)
    assert planned_steps(config, 100) == 300
    assert lr_factor(config, 300, 100) == 0.0
    assert warmup_steps(config, 100) == 60


# --- training ------------------------------------------------------------------------------


def _metrics_rows(run) -> list[dict]:
    with (run.path / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_training_stops_at_total_steps_mid_epoch(tmp_path):
    """64 images at batch 16 are 4 steps an epoch; 10 steps end half-way through epoch 3."""
    seen: list[int] = []
    run = cnnlab.train(
        **FOUR_STEP_EPOCHS,
        epochs=3,
        total_steps=10,
        augment="none",
        out=str(tmp_path / "run"),
        quiet=True,
        on_step_end=lambda model, step: seen.append(step),
    )
    assert seen == list(range(10))
    assert len(_metrics_rows(run)) == 3
    config = load_config(run.path / "config.toml")
    assert config.total_steps == 10 and config.warmup_steps == 2  # a fifth of 10
    assert lr_factor(config, 9, 4) == min(lr_factor(config, s, 4) for s in range(10))
    assert lr_factor(config, 10, 4) == 0.0


def test_the_epoch_lines_count_the_epochs_total_steps_reaches(tmp_path, capsys):
    """epochs=4 with total_steps=6 at 4 steps an epoch trains 2 epochs: 'epoch 2/2', not '/4'."""
    cnnlab.train(
        **FOUR_STEP_EPOCHS,
        epochs=4,
        total_steps=6,
        out=str(tmp_path / "run"),
    )
    lines = re.findall(r"^epoch \d+/\d+", capsys.readouterr().out, re.MULTILINE)
    assert lines == ["epoch 1/2", "epoch 2/2"]


@pytest.mark.slow
def test_a_budget_is_planned_recorded_and_replayed_on_resume(tmp_path, capsys):
    """A real budget: measured, planned, written to config.toml; the resumed run measures
    nothing and goes on with the recorded plan. (60 s plan thousands of steps of the tiny model;
    the test trains two epochs of 8 steps of them, pausing after each.)"""
    steps: list[int] = []
    folder = tmp_path / "run"
    cnnlab.train(
        **TINY_RUN,
        budget="60",
        stop_after=1,
        out=str(folder),
        on_step_end=lambda m, s: steps.append(s),
    )
    first = capsys.readouterr().out
    assert "budget: 60 = 60.0 s:" in first and "paused" in first
    planned = load_config(folder / "config.toml")
    assert planned.budget == "60" and planned.budget_seconds == 60.0
    assert planned.total_steps >= MIN_STEPS
    assert planned.epochs == math.ceil(planned.total_steps / 8)  # 256 / 32 steps an epoch
    assert planned.warmup_steps == round(planned.total_steps / 5)
    cnnlab.train(resume=str(folder), stop_after=2, on_step_end=lambda m, s: steps.append(s))
    again = capsys.readouterr().out
    assert "budget:" not in again  # nothing measured, nothing planned
    assert load_config(folder / "config.toml") == planned
    assert steps == list(range(16))


@pytest.mark.slow
def test_a_budget_run_replans_once_at_its_warm_ups_end_and_records_the_new_total(tmp_path, capsys):
    """A real budget run of the tiny model (a few ms a step: hundreds of warm-up steps): after
    the warm-up it re-plans from its own steps, says so, trains exactly the new total and
    leaves it in config.toml with the warm-up it had."""
    steps: list[int] = []
    folder = tmp_path / "run"
    cnnlab.train(
        **TINY_RUN,
        budget="6",
        out=str(folder),
        on_step_end=lambda m, s: steps.append(s),
    )
    out = capsys.readouterr().out
    replanned = re.search(r"budget: re-planned after (\d+) steps at [\d.]+ ms a step \(planned "
                          r"[\d.]+\): ([\d,]+) steps \(was ([\d,]+)\)", out)  # fmt: skip
    assert replanned, out
    at, total, was = (int(g.replace(",", "")) for g in replanned.groups())
    recorded = load_config(folder / "config.toml")
    assert recorded.total_steps == total == len(steps) and steps == list(range(total))
    assert recorded.warmup_steps == at == round(was / 5)  # the planned run's warm-up, kept
    assert recorded.epochs == math.ceil(total / 8)
    with open(folder / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == recorded.epochs
    assert out.count("re-planned") == 1


@pytest.mark.slow
def test_an_e_budget_measures_e_and_records_it(tmp_path, capsys):
    folder = tmp_path / "run"
    cnnlab.train(**TINY_RUN, budget="50E", stop_after=1, out=str(folder))
    planned = load_config(folder / "config.toml")
    assert planned.e_seconds > 0
    assert planned.budget_seconds == pytest.approx(50 * planned.e_seconds, abs=0.5)
    assert f"(E = {planned.e_seconds:.1f} s measured here)" in capsys.readouterr().out


@pytest.mark.slow
def test_the_clis_whole_process_clock_is_for_one_call_only(tmp_path, capsys):
    """`cnnlab train` counts a budget from the process's start; a later cnnlab.train() in the
    same process (tests, notebooks) counts from its own call: the clock is an argument of each
    call, no state left behind."""
    whole, call = BudgetClock.whole_process(), BudgetClock.from_now()
    assert whole.since is None and call.since is not None
    assert call.spent() < whole.spent()  # this process started before the call
    cnnlab.train(**TINY_RUN, budget="60", stop_after=1, out=str(tmp_path / "run"))
    out = capsys.readouterr().out
    spent = float(re.search(r"budget: 60 = 60.0 s: ([\d.]+) s spent", out).group(1))
    assert spent < whole.spent()  # counted from cnnlab.train()'s call, not the process's start


def test_training_imports_torch_dynamo_on_a_thread_before_the_optimizer_needs_it():
    """torch.optim imports torch._dynamo on its first call (~1.2 CPU s): prefetched on a daemon
    thread while the data loads, so the import is done (or under way) when the optimizer asks."""
    code = (
        "import sys, threading, torch\n"
        "from cnnlab.training.schedule import prefetch_optimizer_import\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "prefetch_optimizer_import()\n"
        "[t] = [t for t in threading.enumerate() if t.name == 'import-dynamo']\n"
        "assert t.daemon\n"
        "t.join()\n"
        "assert 'torch._dynamo' in sys.modules\n"
        "prefetch_optimizer_import()  # imported: no second thread\n"
        "assert not [t for t in threading.enumerate() if t.name == 'import-dynamo']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
