"""Training and evaluation loops, callbacks, checkpoints and resuming.

``Trainer.fit`` runs epochs of training, each followed by an evaluation on the test set, and
calls its callbacks at the start and end of the run, of every epoch and after every batch. The
built-in callbacks draw the progress bar (``ProgressBar``), write ``last.safetensors`` and
``best.safetensors`` (``Checkpoint``), append to ``metrics.jsonl`` (``MetricsLog``) and redraw
``curves.png`` (``Curves``).

A checkpoint holds everything the rest of the run depends on: model and optimizer state, the
epoch, the config, the metrics so far, and the state of every random generator (the global
one and the run's own, for the data order and the distortions). Resuming from the checkpoint
of epoch k therefore continues exactly as the uninterrupted run did after epoch k, and ends
with the same weights bit for bit.

``run(config)`` builds all of this from a ``TrainConfig``: it is what ``deepgrad train`` calls.
"""
from __future__ import annotations

import importlib.util
import math
import os
import signal
import sys
import time
from typing import Any, Callable, Iterable, Sequence

from .. import __version__
from ..autograd.grad_mode import no_grad
from ..random import default_generator
from .config import TrainConfig
from .metrics import JSONLinesWriter, RunningAverage, correct

__all__ = ["Callback", "ProgressBar", "Checkpoint", "MetricsLog", "Curves", "Trainer", "fit",
           "evaluate", "run", "load_checkpoint", "saved_config", "build_optimizer",
           "build_scheduler", "format_record", "CHECKPOINT_FORMAT", "TrainingDiverged",
           "TrainingInterrupted", "BEST", "LAST", "METRICS", "CURVES"]

CHECKPOINT_FORMAT = "deepgrad.train"
BEST = "best.safetensors"
LAST = "last.safetensors"
METRICS = "metrics.jsonl"
CURVES = "curves.png"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """``run`` was stopped by Ctrl-C (or SIGTERM, if the caller maps it to
    ``KeyboardInterrupt(signal.SIGTERM)``).

    Attributes:
        epoch: the epoch in progress. saved_epoch: the epoch in ``last.safetensors`` (0 if
        none was saved). signal: the signal number.
    """

    def __init__(self, epoch: int, saved_epoch: int, signum: int) -> None:
        super().__init__(f"interrupted in epoch {epoch}")
        self.epoch = epoch
        self.saved_epoch = saved_epoch
        self.signal = signum


def _default_loss(output, target):
    from ..nn import functional as F

    return F.cross_entropy(output, target)


# -- callbacks ---------------------------------------------------------------------------------
class Callback:
    """Hooks called by ``Trainer.fit``; override the ones you need.

    ``logs`` of ``on_batch_end`` holds the epoch's running ``loss`` and ``accuracy``, ``seen``
    (samples so far this epoch), ``total`` (samples per epoch), ``batch`` (1-based),
    ``batches`` and ``samples_per_second``. ``record`` of ``on_epoch_end`` is the epoch's line of
    ``metrics.jsonl``. ``on_train_end`` runs also when training stops on an exception (then
    ``trainer.interrupted`` is true). Raising ``KeyboardInterrupt`` from a hook stops training
    as Ctrl-C does.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_batch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass


class ProgressBar(Callback):
    """A tqdm bar per epoch with loss, accuracy and samples/s, and one summary line per epoch.

    Without tqdm, or when ``file`` is not a terminal, progress is printed as plain lines (about
    ten per epoch) to ``log``.

    Args:
        file: where the bar goes (default ``sys.stderr``).
        log: where summary and plain progress lines go (default ``sys.stdout``).
        use_tqdm: ``None`` (auto: tqdm if installed and ``file`` is a terminal), True or False.
        mininterval: least seconds between redraws of the bar.
    """

    def __init__(self, file=None, log=None, use_tqdm: bool | None = None,
                 mininterval: float = 0.1) -> None:
        self.file = file
        self.log = log
        self.use_tqdm = use_tqdm
        self.mininterval = mininterval
        self._bar = None
        self._epochs = 0
        self._next_line = 0

    def _out(self, line: str) -> None:
        log = self.log or sys.stdout
        log.write(line + "\n")
        log.flush()

    def _tqdm(self):
        file = self.file or sys.stderr
        if self.use_tqdm is False:
            return None
        if self.use_tqdm is None and not (hasattr(file, "isatty") and file.isatty()):
            return None
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:
            if self.use_tqdm:
                raise ImportError("ProgressBar: the progress bar needs the optional package "
                                  "'tqdm'; install it with pip install 'deepgrad[train]'")
            return None
        return tqdm

    def on_train_begin(self, trainer: Trainer) -> None:
        self._epochs = trainer.target_epochs

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        total = _loader_size(trainer.train_loader)
        tqdm = self._tqdm()
        self._next_line = 1
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=f"epoch {epoch}/{self._epochs}",
                             unit=" samples", file=self.file or sys.stderr, leave=False,
                             dynamic_ncols=True, smoothing=0.1,
                             mininterval=self.mininterval)
        self._epoch = epoch

    def on_batch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        bar = self._bar
        if bar is not None:
            bar.update(logs["seen"] - bar.n)
            if logs["batch"] % 10 == 0 or logs["batch"] == logs["batches"]:
                # tqdm shows the rate itself, in samples/s
                bar.set_postfix_str(
                    f"loss {logs['loss']:.4f}, acc {100 * logs['accuracy']:.2f}%",
                    refresh=False)
            return
        # plain lines at every tenth of the epoch
        if logs["batch"] * 10 >= self._next_line * logs["batches"] and \
                logs["batch"] < logs["batches"]:
            while logs["batch"] * 10 >= self._next_line * logs["batches"]:
                self._next_line += 1
            width = len(str(logs["total"]))
            self._out(f"  epoch {self._epoch}/{self._epochs} [{logs['seen']:>{width}}/"
                      f"{logs['total']}]  loss {logs['loss']:.4f}  acc "
                      f"{100 * logs['accuracy']:.2f}%  {logs['samples_per_second']:.0f} "
                      f"samples/s")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._close()
        self._out(format_record(record, self._epochs, best=trainer.best_epoch == record["epoch"]))

    def on_train_end(self, trainer: Trainer) -> None:
        self._close()


def format_record(record: dict[str, Any], epochs: int | None = None, best: bool = False) -> str:
    """One line for an epoch's metrics, as ``deepgrad train`` prints them."""
    width = len(str(epochs)) if epochs else 1
    head = f"epoch {record['epoch']:>{width}}" + (f"/{epochs}" if epochs else "")
    parts = [head, f"train loss {record['train_loss']:.4f} acc "
                   f"{100 * record['train_accuracy']:.2f}%"]
    if record.get("test_loss") is not None:
        parts.append(f"test loss {record['test_loss']:.4f} acc "
                     f"{100 * record['test_accuracy']:.2f}% (error "
                     f"{100 * record['test_error']:.2f}%)")
    parts.append(f"{record['seconds']:.1f} s, {record['samples_per_second']:.0f} samples/s")
    return " | ".join(parts) + ("  * best" if best else "")


class Checkpoint(Callback):
    """After every epoch, save the trainer's state to ``DIR/last.safetensors``, and also to
    ``DIR/best.safetensors`` when the test accuracy is the best so far. Writes are atomic."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = os.fspath(directory)

    def on_train_begin(self, trainer: Trainer) -> None:
        os.makedirs(self.directory, exist_ok=True)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        from ..io import save

        state = trainer.state_dict()
        # best first: if the run stops between the two writes, last.safetensors still holds
        # the previous epoch, and the resumed run redoes this one and writes both again
        if trainer.best_epoch == record["epoch"]:
            save(state, os.path.join(self.directory, BEST))
        save(state, os.path.join(self.directory, LAST))


class MetricsLog(Callback):
    """``metrics.jsonl``: one JSON line per epoch. On start the file is rewritten to hold the
    trainer's history (empty for a new run), so a resumed run drops the lines of epochs it
    redoes."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._writer: JSONLinesWriter | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self._writer = JSONLinesWriter(self.path, records=trainer.history)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self._writer is None:
            raise RuntimeError("MetricsLog: on_epoch_end came before on_train_begin; run it "
                               "through Trainer.fit")
        self._writer.write(record)


class Curves(Callback):
    """Redraw ``curves.png`` (loss and error per epoch, train and test) after every epoch.

    Without matplotlib, warns once on ``sys.stderr`` and draws nothing.
    """

    def __init__(self, path: str | os.PathLike, title: str | None = None) -> None:
        self.path = os.fspath(path)
        self.title = title
        self.enabled = True

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from ..viz import plot_curves

        try:
            plot_curves(trainer.history, self.path, self.title)
        except ImportError:
            self.enabled = False
            sys.stderr.write(f"deepgrad: warning: matplotlib is not installed, so "
                             f"{os.path.basename(self.path)} is not drawn; pip install "
                             f"'deepgrad[train]'\n")


# -- the loop ----------------------------------------------------------------------------------
def _loader_size(loader) -> int | None:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def _batch_size(target) -> int:
    return int(target.shape[0])


class Trainer:
    """Trains a classifier epoch by epoch and keeps everything needed to resume it.

    Args:
        model: the network; its output is ``(N, C)`` class scores.
        optimizer: a ``deepgrad.optim`` optimizer over ``model``'s parameters.
        train_loader: yields ``(input, target)`` batches.
        test_loader: evaluated after every epoch (optional).
        loss_fn: ``loss_fn(output, target)`` (default ``F.cross_entropy``).
        scheduler: an ``optim.lr_scheduler`` scheduler, stepped once per epoch (optional).
        callbacks: ``Callback`` objects, called in order.
        generators: the run's own ``deepgrad.Generator``s by name (data order, distortions);
            their states are saved and restored with the global generator's.
        config: a JSON-able dict (e.g. ``TrainConfig.to_dict()``) saved in checkpoints.

    Attributes:
        epoch: completed epochs. ``history``: their records. ``best_epoch``,
        ``best_accuracy``: the epoch with the highest test accuracy so far.

    Example:
        >>> trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.01), train_loader,
        ...                   test_loader)
        >>> history = trainer.fit(epochs=3)
    """

    def __init__(self, model, optimizer, train_loader, test_loader=None, *,
                 loss_fn: Callable | None = None, scheduler=None,
                 callbacks: Sequence[Callback] = (), generators: dict | None = None,
                 config: dict | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.loss_fn = loss_fn or _default_loss
        self.scheduler = scheduler
        self.callbacks = list(callbacks)
        self.generators = dict(generators or {})
        self.config = config
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_accuracy: float | None = None
        self.target_epochs = 0
        self.start_epoch = 0  # the epoch the last call of fit started from
        self.interrupted = False

    # -- running ---------------------------------------------------------------------------
    def fit(self, epochs: int) -> list[dict[str, Any]]:
        """Train until ``epochs`` epochs are complete (counting those done before a resume);
        returns the history, one record per epoch."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"Trainer.fit: epochs must be a non-negative integer; got {epochs!r}")
        self.target_epochs = epochs
        self.start_epoch = self.epoch
        self.interrupted = False
        callbacks = self.callbacks
        for cb in callbacks:
            cb.on_train_begin(self)
        try:
            while self.epoch < epochs:
                self._run_epoch(self.epoch + 1)
        except BaseException:
            self.interrupted = True
            raise
        finally:
            for cb in callbacks:
                cb.on_train_end(self)
        return self.history

    def _run_epoch(self, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch)
        start = time.perf_counter()
        train_loss, train_acc, seen, train_seconds = self.train_epoch(epoch)
        test = self.evaluate() if self.test_loader is not None else None
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "test_loss": test["loss"] if test else None,
            "test_accuracy": test["accuracy"] if test else None,
            "test_error": test["error"] if test else None,
            "lr": float(lr),
            "seconds": time.perf_counter() - start,
            "samples_per_second": seen / train_seconds if train_seconds > 0 else 0.0,
        }
        self.epoch = epoch
        self.history.append(record)
        score = test["accuracy"] if test else -train_loss
        if self.best_accuracy is None or score > self.best_accuracy:
            self.best_epoch = epoch
            self.best_accuracy = score
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)

    def train_epoch(self, epoch: int) -> tuple[float, float, int, float]:
        """One pass over ``train_loader``; returns (mean loss, accuracy, samples, seconds)."""
        model = self.model
        optimizer = self.optimizer
        loss_fn = self.loss_fn
        callbacks = self.callbacks
        model.train()
        loss_avg = RunningAverage()
        hits = 0
        batches = len(self.train_loader)
        total = _loader_size(self.train_loader) or 0
        start = time.perf_counter()
        for i, (x, y) in enumerate(self.train_loader, 1):
            output = model(x)
            loss = loss_fn(output, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            n = _batch_size(y)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"fit: the training loss became {value} in epoch {epoch} (batch {i}); the "
                    f"learning rate {optimizer.param_groups[0]['lr']} is probably too large")
            loss_avg.update(value, n)
            hits += correct(output, y)
            if callbacks:
                elapsed = time.perf_counter() - start
                logs = {"epoch": epoch, "batch": i, "batches": batches, "seen": loss_avg.count,
                        "total": total, "loss": loss_avg.value,
                        "accuracy": hits / loss_avg.count,
                        "samples_per_second": loss_avg.count / elapsed if elapsed > 0 else 0.0}
                for cb in callbacks:
                    cb.on_batch_end(self, logs)
        seconds = time.perf_counter() - start
        seen = loss_avg.count
        return loss_avg.value, (hits / seen if seen else math.nan), seen, seconds

    def evaluate(self, loader=None) -> dict[str, float]:
        """Loss, accuracy and error on ``loader`` (default the test loader)."""
        return evaluate(self.model, loader if loader is not None else self.test_loader,
                        self.loss_fn)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (see the module docstring)."""
        rng = {"global": default_generator.get_state()}
        for name, g in self.generators.items():
            rng[name] = g.get_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "deepgrad_version": __version__,
            "config": self.config,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "metrics": [dict(r) for r in self.history],
            "best": {"epoch": self.best_epoch, "accuracy": self.best_accuracy},
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``: model, optimizer, scheduler, epoch, metrics and every
        random generator's state."""
        _check_training_state(state)
        missing = [name for name in self.generators if name not in state["rng"]]
        if missing:
            raise ValueError(
                f"Trainer.load_state_dict: the checkpoint has no state for the generators "
                f"{', '.join(map(repr, missing))}; it was written by another kind of run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        default_generator.set_state(state["rng"]["global"])
        for name, g in self.generators.items():
            g.set_state(state["rng"][name])
        self.epoch = int(state["epoch"])
        self.history = [dict(r) for r in state["metrics"]]
        best = state.get("best") or {}
        self.best_epoch = best.get("epoch")
        self.best_accuracy = best.get("accuracy")


def _check_training_state(state: Any) -> None:
    keys = ("format", "epoch", "model", "optimizer", "metrics", "rng")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or any(
            k not in state for k in keys):
        raise ValueError(
            "Trainer.load_state_dict: not a training checkpoint; expected a dict written by "
            f"Trainer.state_dict() with keys {', '.join(keys)}")


def evaluate(model, loader, loss_fn: Callable | None = None) -> dict[str, float]:
    """Mean loss, accuracy and error (1 - accuracy) of ``model`` over ``loader``, in eval mode
    and without recording gradients; the model's train/eval mode is restored afterwards.

    Example:
        >>> evaluate(model, DataLoader(test_set, batch_size=1000))
        {'loss': 0.041, 'accuracy': 0.987, 'error': 0.013, 'samples': 10000}
    """
    loss_fn = loss_fn or _default_loss
    was_training = model.training
    model.eval()
    loss_avg = RunningAverage()
    hits = 0
    try:
        with no_grad():
            for x, y in loader:
                output = model(x)
                loss_avg.update(loss_fn(output, y).item(), _batch_size(y))
                hits += correct(output, y)
    finally:
        model.train(was_training)
    n = loss_avg.count
    acc = hits / n if n else math.nan
    return {"loss": loss_avg.value, "accuracy": acc, "error": 1.0 - acc, "samples": n}


def fit(model, optimizer, train_loader, test_loader=None, epochs: int = 1, *,
        loss_fn: Callable | None = None, scheduler=None,
        callbacks: Iterable[Callback] = ()) -> list[dict[str, Any]]:
    """Train ``model`` for ``epochs`` epochs (see ``Trainer``); returns one record per epoch.

    Example:
        >>> history = fit(model, optim.Adam(model.parameters()), train_loader, test_loader, 3)
        >>> history[-1]["test_accuracy"]
    """
    trainer = Trainer(model, optimizer, train_loader, test_loader, loss_fn=loss_fn,
                      scheduler=scheduler, callbacks=list(callbacks))
    return trainer.fit(epochs)


# -- runs from a config --------------------------------------------------------------------
def build_optimizer(config: TrainConfig, model):
    """The optimizer a config asks for, over ``model``'s parameters."""
    from .. import optim

    lr, momentum = config.lr, config.momentum
    if lr is None:  # TrainConfig fills it in; a config built otherwise must set it
        raise ValueError(f"build_optimizer: the config sets no lr for optimizer "
                         f"{config.optimizer!r}; pass lr=")
    if config.optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=lr, momentum=momentum or 0.0)
    return optim.Adam(model.parameters(), lr=lr)


def build_scheduler(config: TrainConfig, optimizer):
    """The per-epoch learning-rate scheduler a config asks for (``None`` for a constant lr)."""
    from ..optim.lr_scheduler import LambdaLR
    from .config import lecun98_factor

    if config.lr_schedule == "lecun98":
        return LambdaLR(optimizer, lecun98_factor)
    return None


# settings that may differ between a run and its resumption
_RESUMABLE_CHANGES = ("epochs", "out", "test_batch_size")


def _read_checkpoint(path: str) -> dict[str, Any]:
    from ..io import load

    state = load(path)
    try:
        _check_training_state(state)
        if not isinstance(state.get("config"), dict):
            raise ValueError("no config")
    except ValueError:
        raise ValueError(
            f"{path} is not a deepgrad training checkpoint (it holds no training state); "
            f"expected a file written by 'deepgrad train'") from None
    return state


def saved_config(path: str) -> TrainConfig:
    """The ``TrainConfig`` stored in the training checkpoint ``path``."""
    state = _read_checkpoint(path)
    return _config_of(state, path)


def _config_of(state: dict, path: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} holds an unusable config: {e}") from None


def run(config: TrainConfig, resume: bool = False, callbacks: Sequence[Callback] = (),
        progress: bool = True) -> Trainer:
    """Train as ``config`` says, writing checkpoints, metrics and curves to ``config.out``.

    Args:
        config: the run's settings.
        resume: continue the run saved in ``config.out/last.safetensors``. Its saved settings
            must equal ``config`` except ``epochs`` (which may grow) and ``out``.
        callbacks: extra callbacks, called after the built-in ones.
        progress: print a progress bar and a line per epoch.

    Returns:
        The ``Trainer``, after its last epoch (its ``history`` holds the metrics).

    Raises:
        FileExistsError: a new run would overwrite the run in ``config.out``.
        FileNotFoundError: ``resume`` but there is no checkpoint to resume from.
        ValueError: the checkpoint belongs to a run with other settings, or is not a training
            checkpoint.
    """
    from .. import manual_seed
    from ..models import create
    from .pipeline import make_generators, make_loaders

    if importlib.util.find_spec("safetensors") is None:
        # found out now, not at the end of the first epoch
        raise ImportError("run: checkpoints need the optional package 'safetensors'; install "
                          "it with pip install 'deepgrad[train]'")
    out = config.out
    if out is None:
        raise ValueError("run: the config names no output folder; set out= (--out)")
    last = os.path.join(out, LAST)
    state = None
    if resume:
        if not os.path.exists(last):
            raise FileNotFoundError(
                f"cannot resume: {last} does not exist; start the run without --resume")
        state = _read_checkpoint(last)
        before = _config_of(state, last)
        if before.model != config.model:
            raise ValueError(
                f"cannot resume: {last} is a checkpoint of model {before.model!r}, not "
                f"{config.model!r}")
        for name in before.to_dict():
            if name in _RESUMABLE_CHANGES:
                continue
            old, new = getattr(before, name), getattr(config, name)
            if old != new:
                raise ValueError(
                    f"cannot resume: the run in {out} has {name}={old!r}, not {new!r}; drop "
                    f"the option to continue it as it was")
    elif os.path.exists(last):
        raise FileExistsError(
            f"{out} already holds a run ({LAST}); resume it with --resume, or choose another "
            f"--out (or delete {out})")

    manual_seed(config.seed)
    model = create(config.model)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    generators = make_generators(config.seed)
    train_loader, test_loader = make_loaders(config, generators)
    cbs: list[Callback] = [ProgressBar()] if progress else []
    cbs += [Checkpoint(out), MetricsLog(os.path.join(out, METRICS)),
            Curves(os.path.join(out, CURVES), title=f"{config.model} on {config.dataset}")]
    cbs += list(callbacks)
    trainer = Trainer(model, optimizer, train_loader, test_loader, scheduler=scheduler,
                      callbacks=cbs, generators=generators, config=config.to_dict())
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (ValueError, TypeError, RuntimeError) as e:
            raise ValueError(f"cannot resume from {last}: {e}") from None
    trainer.start_epoch = trainer.epoch
    if trainer.epoch >= config.epochs:
        if progress:
            print(f"nothing to do: the run in {out} has completed {trainer.epoch} epochs "
                  f"already (ask for more with --epochs)", flush=True)
        return trainer
    try:
        if progress:
            print(_describe(config, trainer, last), flush=True)
        trainer.fit(config.epochs)
    except KeyboardInterrupt as e:
        signum = e.args[0] if e.args and e.args[0] == signal.SIGTERM else signal.SIGINT
        raise TrainingInterrupted(trainer.epoch + 1, _saved_epoch(last), int(signum)) \
            from None
    return trainer


def _saved_epoch(path: str) -> int:
    """The epoch in the checkpoint at ``path``, 0 if there is none. Read from the file because
    an interrupt can land between writing it and noting that it was written."""
    from ..io import load

    try:
        return int(load(path)["epoch"])
    except Exception:  # missing or unreadable: nothing to resume from
        return 0


def _describe(config: TrainConfig, trainer: Trainer, last: str) -> str:
    """The line ``deepgrad train`` prints before the first epoch."""
    sizes = (f"{len(trainer.train_loader.dataset):,} training and "
             f"{len(trainer.test_loader.dataset):,} test images")
    opt = f"{config.optimizer}, lr {config.lr:g}"
    if config.optimizer == "sgd":
        opt += f", momentum {config.momentum:g}"
    if trainer.epoch:
        what = f"resuming {config.model} after epoch {trainer.epoch} from {last}"
    else:
        what = f"training {config.model}"
    distort = ", distorted" if config.distort else ""
    return (f"{what} on {config.dataset} ({sizes}{distort}) for {config.epochs} epochs: "
            f"{opt}, batch size {config.batch_size}, seed {config.seed}")


def load_checkpoint(path: str | os.PathLike) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """Load a checkpoint written by ``deepgrad train``: ``(model, config, state)``, the model
    in eval mode with the saved weights.

    Raises:
        deepgrad.io.CheckpointError: the file is missing, not a safetensors file or corrupt.
        ValueError: it is not a training checkpoint, or its weights do not fit the model its
            config names.
    """
    from ..models import create

    path = os.fspath(path)
    state = _read_checkpoint(path)
    config = _config_of(state, path)
    model = create(config.model)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = "; ".join(lines[1:] if len(lines) > 1 else lines)
        if len(detail) > 200:
            detail = detail[:200] + "..."
        raise ValueError(
            f"{path} does not hold weights of model {config.model!r}, which its config names "
            f"({detail})") from None
    model.eval()
    return model, config, state
