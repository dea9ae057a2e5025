"""The Retrain panel's runs: check a job, train it in the background, show its events, cancel and resume.

Start first runs :func:`~slimgui.core.jobs.retrain_check_task` (the job is checked and its time and memory
estimated on this machine; a config that cannot work is refused with the core's message) and then
:func:`~slimgui.core.jobs.retrain_task` on the runner's ``"train"`` lane.  The training loop's events arrive on the
worker thread and reach the GUI thread through a queued signal; the curves and the status line redraw at a
bounded rate, so the window never waits on the job.  Checkpoints make Cancel, closing the app and even a killed
process resumable.

An event is shown by what it holds, never by what a family calls things: the validation loss and whatever other
``val_*`` metrics it carries (drawn against the curves' right axis), a family's own loss terms, the rate in the
items the run counts (``event["items"]``).

:class:`RetrainRun` is a mixin of :class:`~slimgui.gui.retrain_panel.RetrainPanel`.
"""

from __future__ import annotations

import itertools
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

from slimgui.core.errors import SlimError
from slimgui.core.io import cache_dir
from slimgui.core.jobs import Job, format_eta, retrain_check_task, retrain_task, run_state
from slimgui.core.options import fields_of
from slimgui.core.session import human_bytes, human_count
from slimgui.core.settings import put
from slimgui.core.train import TrainConfig, checkpoints, estimate_key, time_left

from .retrain_form import data_owner

# what every step event holds; anything else numeric is one of the family's own loss terms
GENERIC_KEYS = {"event", "step", "total", "train_loss", "lr", "items", "eta_s", "val_loss", "val_metric", "metrics",
                "estimate", "resumed", "path", "step_time_s", "validation_time_s"}
FRESH_S = 30 * 60  # an estimate this recent is reused by Start/Resume for the same job (its key) instead of timed again
_runs = itertools.count(1)


def validation_metrics(ev: dict[str, Any]) -> list[tuple[str, float]]:
    """(name, value) of the validation metrics besides the loss an event or result carries (``val_*``)."""
    return [(k, float(v)) for k, v in ev.items() if k.startswith("val_") and k not in ("val_loss", "val_metric")
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]


def metric_title(name: str, labels: dict[str, str] | None = None) -> str:
    """How a validation metric is shown: its declared label, else its name without ``val_``."""
    if labels and name in labels:
        return labels[name]
    return name.removeprefix("val_").replace("_", " ")


def validation_text(ev: dict[str, Any], html: bool = True, labels: dict[str, str] | None = None) -> str:
    """"validation loss 0.1234 (metric 3.4, step 20)" — the other metrics only when the event has them."""
    loss = ev.get("val_loss")
    if not isinstance(loss, (int, float)):
        return "no validation yet"
    b = ("<b>", "</b>") if html else ("", "")
    text = f"validation loss {b[0]}{loss:.4f}{b[1]}"
    extra = [f"{metric_title(k, labels)} {v:.4g}" for k, v in validation_metrics(ev)]
    if ev.get("event") == "step" and "step" in ev:
        extra.append(f"step {ev['step']}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _terms(ev: dict[str, Any]) -> list[str]:
    """A family's own loss terms in a step event (e.g. a distillation's parts), at most four."""
    out = []
    for k, v in ev.items():
        if k in GENERIC_KEYS or k.startswith("val_") or k.endswith("_per_s") or not isinstance(v, (int, float)) \
                or isinstance(v, bool):
            continue
        out.append(f"{k} {v:.4g}")
    return out[:4]


class RetrainRun:
    """The running half of the Retrain panel (a mixin: see the module docstring)."""

    # -- state -------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return any(j is not None and not j.status.finished for j in (self.check_job, self.train_job))

    def _run_state(self, out: str | None = None) -> dict[str, Any]:
        out = out or self.out.text().strip()
        root = Path(out) if out else None
        key = (out, tuple(p.name for p in checkpoints(out)) if out else (),
               bool(root and (root / "slimgui_train.json").exists()))
        if self._state_cache is None or self._state_cache[0] != key:
            self._state_cache = (key, run_state(out) if out else run_state(cache_dir() / ".none"))
        return self._state_cache[1]

    def can_resume(self) -> bool:
        if self.busy or not self.out.text().strip():
            return False
        state = self._run_state()
        if not state["checkpoints"]:
            return False
        return not state["finished"] or self.steps.value() > state["step"]

    def _take_config(self, cfg: TrainConfig) -> None:
        """Show a run's own configuration: its generic settings, its method's and its data's options."""
        self.settings.take(cfg)
        family, spec = self._family()
        schema = self._schema(spec, "train_options") if spec is not None else None
        if family and schema is not None:
            names = {f.name for f in fields_of(schema)}
            put(self.settings.options, data_owner(family),
                {**(self.settings.options.get(data_owner(family)) or {}),
                 **{k: v for k, v in cfg.options.items() if k in names}})
        self._show_settings()

    def _show_run(self, out: str) -> None:
        """Show a run folder: its own settings, its curves up to the last checkpoint, and where it stands."""
        cfg = self._run_config(out)
        if cfg is not None:
            self._take_config(cfg)
        state = self._run_state(out)
        self.curves.set_history(state["history"], state["val_history"])
        total = state["steps"] or self.steps.value()
        if state["finished"]:
            r = state["result"] or {}
            extra = ", ".join(f"validation {metric_title(k)} {v:.4g}" for k, v in validation_metrics(r))
            self.status.setText(f"Finished run: {state['step']} steps" + (f", {extra}" if extra else "")
                                + f". Healed model in {Path(out) / 'model'}")
            self.progress.setValue(1000)
        elif state["checkpoints"]:
            self.status.setText(f"Run stopped at step {state['step']} of {total}: Resume continues from the checkpoint.")
            self.progress.setValue(int(1000 * state["step"] / max(1, total)))
        else:
            self.progress.setValue(0)

    # -- estimate / start / resume / cancel ---------------------------------------------------------
    def run_estimate(self) -> Job | None:
        """Check the job and show its time and memory estimate (errors go to the notifier)."""
        return self._check(resume=False, then_train=False)

    def start(self) -> Job | None:
        """Check the job, show its estimate, then train from the beginning in the background."""
        return self._check(resume=False, then_train=True)

    def resume(self) -> Job | None:
        """Continue the run in the run folder from its last checkpoint (the run's own settings)."""
        return self._check(resume=True, then_train=True)

    def _check(self, *, resume: bool, then_train: bool) -> Job | None:
        if self.busy:
            self.notifier.warning("A retraining job is already running: cancel it first.")
            return None
        try:
            if resume:
                cfg = self._resume_config()
            else:
                cfg = self.config()
                if then_train and (checkpoints(cfg.out) or (Path(cfg.out) / "slimgui_train.json").exists()
                                   or (Path(cfg.out) / "job.json").exists()):
                    old = cfg.out
                    self._propose_out()
                    cfg.out = self.out.text()
                    self.notifier.info(f"{old} already holds a run (Resume continues it): this run goes to {cfg.out}")
        except SlimError as exc:
            self.notifier.error(f"Retrain: {exc.one_line()}")
            return None
        student_name = Path(cfg.model).name
        what = "Resume" if resume else ("Check" if then_train else "Estimate")
        self.estimate_label.setText(f"Checking the job and timing one step of {student_name}…")
        if then_train:
            self.status.setText("")
        models = (self.doc.model, self.doc.slimmed)

        def checked(result, job_ref: list) -> None:
            est, task = result
            job_ref[0].result = est  # the prepared task lives on only in the training job
            est.setdefault("timed_at", time.time())
            self.estimate = est
            self._estimate_done = run_state(cfg.out)["step"] if resume else 0
            self._show_estimate(est, cfg, resume)
            if then_train:
                self._train(cfg, task, resume, models)

        def failed(job: Job) -> None:
            self.estimate_label.setText(f"<span style='color:#b91c1c'>Refused: {job.error}</span>")

        reuse = self._fresh_estimate()
        if reuse is not None and reuse.get("key") == estimate_key(cfg):
            self.estimate_label.setText(f"Checking the job of {student_name} (the step time measured "
                                        f"{format_eta(time.time() - reuse['timed_at']) or '0s'} ago is reused)…")
        ref: list = [None]
        self.check_job = self.runner.submit(
            f"{what} retraining of {student_name} ({cfg.method})",
            partial(retrain_check_task, cfg, registry=self.doc.registry, resume=resume, check_out=then_train,
                    reuse=reuse),
            kind="retrain-check", lane="train", on_done=lambda r: checked(r, ref), on_failed=failed,
            on_cancelled=lambda _j: self.estimate_label.setText("Check cancelled."))
        ref[0] = self.check_job
        self.update_buttons()
        return self.check_job

    def _fresh_estimate(self) -> dict[str, Any] | None:
        """The last estimate when it is recent enough to reuse (the core reuses it only for the same job's key)."""
        est = self.estimate
        if not est or not est.get("key") or time.time() - float(est.get("timed_at") or 0) > FRESH_S:
            return None
        return est

    def refresh_estimate(self) -> None:
        """Redraw the estimate for the step count and validation interval on screen (no new timing); an estimate of
        other settings is marked out of date."""
        est = self.estimate
        if est is None or self.busy or not est.get("key"):
            return
        try:
            cfg = self.config(self.out.text().strip() or None)
        except SlimError:
            return
        if estimate_key(cfg) != est["key"]:
            if "out of date" not in self.estimate_label.text():
                self.estimate_label.setText(self.estimate_label.text()
                                            + " · <i>out of date: the settings changed (Estimate times them)</i>")
            return
        self.estimate = {**est, **time_left(est, cfg, self._estimate_done)}
        self._show_estimate(self.estimate, cfg, self._estimate_done > 0)

    def _calibrate(self, ev: dict[str, Any]) -> None:
        """After a few real steps, the estimate's step (and validation) time become the run's own: the estimate
        shown is corrected, and a Start or Resume of the same job later uses the measured figures."""
        est = self.estimate
        measured = ev.get("step_time_s")
        if est is None or not isinstance(measured, (int, float)) or measured <= 0:
            return
        total = int(ev.get("total") or 0)
        step = int(ev.get("step", 0))
        if step - self._first_step < min(3, max(1, total - self._first_step)):
            return  # the first steps pay one-time costs
        new = {**est, "step_seconds": round(float(measured), 4), "calibrated": True,
               "estimated_step_seconds": est.get("estimated_step_seconds", est["step_seconds"])}
        if isinstance(ev.get("validation_time_s"), (int, float)):
            new["val_seconds"] = round(float(ev["validation_time_s"]), 3)
        cfg = self._run_cfg
        if cfg is None:
            return
        new.update(time_left(new, cfg, step))
        new["timed_at"] = time.time()
        self.estimate = new
        self._show_estimate(new, cfg, True)

    @staticmethod
    def _run_config(out: str) -> TrainConfig | None:
        """The configuration a run folder was started with (None when it has none or it is unreadable)."""
        job_file = Path(out) / "job.json"
        if not job_file.is_file():
            return None
        try:
            cfg = TrainConfig.load(job_file)
        except SlimError:
            return None
        cfg.out = out  # the folder may have moved with its session
        return cfg

    def _resume_config(self) -> TrainConfig:
        """The run's own configuration; a step count raised on screen extends the run."""
        out = self.out.text().strip()
        if not out or not checkpoints(out):
            raise SlimError(f"the run folder {out or '(none)'} holds no checkpoint to resume from",
                            hint="Start a run first, or choose the folder of an earlier run")
        steps = self.steps.value()
        cfg = self._run_config(out) or self.config(out)
        cfg.steps = max(cfg.steps, steps)
        self._take_config(cfg)
        return cfg

    def _show_estimate(self, est: dict[str, Any], cfg: TrainConfig, resume: bool) -> None:
        left = est.get("steps_left", cfg.steps)
        secs = est.get("seconds_left", est["seconds"])
        mem, machine = est["memory_bytes"], est["machine_memory_bytes"]
        items = str(est.get("items") or "samples")  # what the run counts
        count = est.get("item_count", est.get(items, 0))
        parts = [f"<b>≈ {format_eta(secs) if secs >= 1 else '&lt; 1s'}</b> for {left:,} step{'s' if left != 1 else ''}"
                 + (" left" if resume else "") + f" ({est['step_seconds']:.3g} s/step)",
                 f"memory <b>≈ {human_bytes(mem)}</b>" + (f" of {human_bytes(machine)}" if machine else ""),
                 f"{int(count or 0):,} {items}"
                 + (f" ({est['epochs']:g} epochs of {est['train_sequences']:,} samples)"
                    if "epochs" in est and "train_sequences" in est else ""),
                 f"{human_count(est['trainable_params'])} of {human_count(est['params'])} parameters train"]
        if est.get("validations") and est.get("val_seconds"):
            parts.insert(1, f"{est['validations']} validation{'s' if est['validations'] != 1 else ''} of "
                            f"{est['val_seconds']:.2g} s")
        head = "Estimate on this machine"
        if est.get("calibrated"):
            head = (f"Corrected from the run's own steps ({est['step_seconds']:.3g} s/step measured, "
                    f"{est['estimated_step_seconds']:.3g} estimated)")
        elif est.get("reused"):
            head += f" (step timed {format_eta(time.time() - float(est.get('timed_at') or time.time())) or '0s'} ago)"
        self.estimate_label.setText(f"{head}: " + " · ".join(parts))
        self.estimate_label.setToolTip(f"{est['memory_bytes']:,} bytes of memory; {est['params']:,} parameters, "
                                       f"{est['trainable_params']:,} trainable")

    def _train(self, cfg: TrainConfig, task, resume: bool, models) -> Job:
        self._run_id = next(_runs)
        run_id = self._run_id
        self.settings.out = cfg.out
        self._remember_run(cfg.out)
        self._state_cache = None
        self._run_models = models
        self.events = []
        self.result = None
        self._last_step = self._last_val = None
        self.worker_step = 0
        self._run_cfg = cfg
        if resume:
            state = self._run_state(cfg.out)
            self.curves.set_history(state["history"], state["val_history"])
            self.worker_step = state["step"]
        else:
            self.curves.clear()
        self.progress.setValue(int(1000 * self.worker_step / max(1, cfg.steps)))
        self.status.setText(("Resuming" if resume else "Starting") + f" — run folder {cfg.out}")

        def events(ev: dict[str, Any]) -> None:  # worker thread: record the step, hand the event over
            if ev.get("event") == "step":
                self.worker_step = int(ev["step"])
            self.trainEvent.emit(run_id, ev)

        name = Path(cfg.model).name
        self.train_job = self.runner.submit(
            f"Retrain {name} ({cfg.method}, {cfg.steps} steps)",
            partial(retrain_task, cfg, registry=self.doc.registry, task=task, resume=resume, events=events),
            kind="retrain", lane="train", on_done=lambda r: self._trained(r, run_id),
            on_failed=lambda j: self._train_failed(j, run_id), on_cancelled=lambda j: self._train_cancelled(j, run_id))
        self.update_buttons()
        return self.train_job

    def cancel(self) -> None:
        """Cancel the check, the training (stops after the current step, with a checkpoint) or the evaluation."""
        for job in (self.check_job, self.train_job, self.eval_job):
            if job is not None and not job.status.finished:
                self.runner.cancel(job)
        if self.train_job is not None and not self.train_job.status.finished:
            self.status.setText(f"Cancelling after step {self.worker_step + 1}…")
        self.cancel_button.setEnabled(False)

    # -- events (GUI thread) -----------------------------------------------------------------------
    def _on_event(self, run_id: int, ev: dict[str, Any]) -> None:
        if run_id != self._run_id:
            return
        self.events.append(ev)
        kind = ev.get("event")
        if kind == "start":
            self._first_step = int(ev.get("step", 0))
            self.curves.truncate_after(ev.get("step", 0))
            declared = ev.get("metrics") if isinstance(ev.get("metrics"), list) else []
            self._val_labels = {str(m.get("name")): str(m.get("label") or m.get("name")) for m in declared
                                if isinstance(m, dict) and m.get("name")}
        elif kind == "step":
            self.curves.add_train(ev["step"], ev["train_loss"])
            if "val_loss" in ev:
                self.curves.add_val(ev["step"], ev["val_loss"])
                for name, value in validation_metrics(ev):
                    self.curves.add_metric(name, ev["step"], value, metric_title(name, self._val_labels))
                self._last_val = ev
            self._last_step = ev
            self._calibrate(ev)
            if not self._status_timer.isActive():
                self._status_timer.start()
        elif kind == "cancelled":
            self._show_progress()

    def _show_progress(self) -> None:
        self._status_timer.stop()  # a final call (done, cancelled) must not be overwritten by a pending one
        ev = self._last_step
        if ev is None:
            return
        total = max(1, int(ev.get("total") or 1))
        step = int(ev.get("step", 0))
        self.progress.setValue(int(1000 * step / total))
        parts = [f"step <b>{step:,}</b>/{total:,}"]
        if isinstance(ev.get("train_loss"), (int, float)):
            parts.append(f"train loss <b>{ev['train_loss']:.4f}</b>")
        if self._last_val is not None:
            parts.append(validation_text(self._last_val, labels=self._val_labels))
        terms = _terms(ev)  # the family's own loss terms (a distillation's parts, ...)
        if terms:
            parts.append(" · ".join(terms))
        items = str(ev.get("items") or "samples")
        rate = ev.get("items_per_s")
        if isinstance(rate, (int, float)):
            parts.append(f"{rate:,.0f} {items}/s" if rate >= 10 else f"{rate:.2f} {items}/s")
        if isinstance(ev.get("lr"), (int, float)):
            parts.append(f"lr {ev['lr']:.2e}")
        if step < total and isinstance(ev.get("eta_s"), (int, float)):
            parts.append(f"ETA {format_eta(ev['eta_s']) or '0s'}")
        self.status.setText(" · ".join(parts))

    def _trained(self, result: dict[str, Any], run_id: int) -> None:
        if run_id != self._run_id:
            return
        self._show_progress()
        self.curves.refresh()
        self.result = result
        self._state_cache = None
        self.progress.setValue(1000)
        healed = str(Path(result["out"]) / "model")
        seconds = result.get("seconds")
        took = f" in {seconds:.1f}s" if isinstance(seconds, (int, float)) else ""
        text = validation_text(result, labels=self._val_labels)
        self.status.setText(f"<b>Done</b>: {int(result.get('step', 0)):,} steps{took} · {text} · healed model in {healed}")
        self.notifier.info(f"Retraining done: {validation_text(result, html=False, labels=self._val_labels)}; "
                           f"healed model in {healed}")
        self._run_method = str(result.get("method") or self.settings.method)
        self.update_buttons()
        self.evaluate(healed)

    def _train_cancelled(self, job: Job, run_id: int) -> None:
        if run_id != self._run_id:
            return
        self._state_cache = None
        self._show_progress()
        self.curves.refresh()
        step = next((e["step"] for e in reversed(self.events) if e.get("event") == "cancelled"), self.worker_step)
        self.status.setText(f"<b>Cancelled</b> at step {step:,}: Resume continues from the checkpoint.")
        self.update_buttons()

    def _train_failed(self, job: Job, run_id: int) -> None:
        if run_id != self._run_id:
            return
        self._state_cache = None
        self._status_timer.stop()
        self.status.setText(f"<span style='color:#b91c1c'>Failed: {job.error}</span>")
        self.update_buttons()
