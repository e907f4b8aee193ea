"""The ``deepgrad`` command line (also ``python -m deepgrad``): argument parsing only.

    deepgrad train MODEL [--dataset mnist|mnist-sample] [--epochs N] [--batch-size B] [--lr X]
                         [--optimizer sgd|adam] [--momentum M] [--seed S] [--out DIR]
                         [--resume] [--distort]
    deepgrad eval CHECKPOINT [--dataset mnist|mnist-sample]
    deepgrad predict CHECKPOINT IMAGE [IMAGE ...]
    deepgrad summary MODEL

The work is done by ``deepgrad.train`` (training, evaluation, checkpoints) and
``deepgrad.images`` (reading and normalising digit images). Bad input ends with one line on
stderr, ``deepgrad: error: ...``, and a non-zero exit status: 2 for bad usage, 1 for anything
else (a missing dataset, an unreadable image or checkpoint). Set ``DEEPGRAD_DEBUG=1`` to see
the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

EXIT_ERROR = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """An error to report as ``deepgrad: error: <message>``."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``deepgrad: error: ...``) and no usage dump."""

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f"see 'deepgrad {command} --help'" if command else "see 'deepgrad --help'"
        raise CLIError(f"{message} ({hint})", EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _momentum(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models import MODELS
    from .train.config import DATASETS, DEFAULT_LR, DEFAULT_MOMENTUM, MODEL_LR, OPTIMIZERS

    parser = _Parser(prog="deepgrad",
                     description="Train, evaluate and use the networks of deepgrad.models.")
    parser.add_argument("--version", action="version", version=f"deepgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train", help="train a model on MNIST",
        description="Train MODEL, evaluating on the test set after every epoch. DIR receives "
                    "last.safetensors and best.safetensors (by test accuracy), metrics.jsonl "
                    "and curves.png. The same --seed gives the same weights bit for bit; "
                    "--resume continues an interrupted run to the same final weights.")
    p.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(MODELS)}")
    # None marks "not given": with --resume, only options given explicitly are compared with
    # the saved run
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="mnist (from $DEEPGRAD_DATA) or mnist-sample (6,000 + 1,000 digits "
                        "shipped with deepgrad); default mnist")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                   help="number of epochs (default 10)")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                   help="training batch size (default 64)")
    p.add_argument("--lr", type=_positive_float, default=None, metavar="X",
                   help=f"initial learning rate (default {DEFAULT_LR['sgd']:g} for sgd, "
                        f"{MODEL_LR[('lenet5', 'sgd')]:g} for lenet5 with sgd, "
                        f"{DEFAULT_LR['adam']:g} for adam); lowered after epochs 2, 5, 8 and "
                        f"12 to 0.4, 0.2, 0.1 and 0.02 of it, the shape of the schedule of "
                        f"LeCun et al. (1998)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="sgd (with momentum) or adam (default sgd)")
    p.add_argument("--momentum", type=_momentum, default=None, metavar="M",
                   help=f"SGD momentum (default {DEFAULT_MOMENTUM})")
    p.add_argument("--seed", type=_seed, default=None, metavar="S",
                   help="random seed for weights, data order and distortions (default 0)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default runs/MODEL)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in DIR/last.safetensors")
    p.add_argument("--distort", action="store_true", default=None,
                   help="random affine distortions of the training images")

    p = sub.add_parser("eval", help="evaluate a checkpoint on the test set",
                       description="Print the test loss, accuracy and error of a checkpoint.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="test set to use (default: the one the model was trained on)")

    p = sub.add_parser(
        "predict", help="classify images of digits",
        description="Print the predicted digit and its probability for each image. Images "
                    "may have any size, grey or colour, light digits on dark or dark on light; "
                    "they are cropped, scaled into a 20x20 box and centred by centre of mass "
                    "in 28x28, as MNIST was made.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("images", metavar="IMAGE", nargs="+")

    p = sub.add_parser("summary", help="print a model's layers, parameters and connections",
                       description="Print deepgrad.summary(model, input_shape).")
    p.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(MODELS)}")

    from .reproduce import available

    p = sub.add_parser(
        "reproduce", help="reproduce a claim of the papers deepgrad follows",
        description="Run one reproduction and write its Markdown report and PNG figures. "
                    "Full runs write to docs/reproductions/NAME, --quick runs to "
                    "runs/reproductions/NAME unless --out is given.")
    p.add_argument("name", metavar="NAME", help=f"one of: {', '.join(available())}")
    p.add_argument("--quick", action="store_true", help="a reduced run of under a minute")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the report")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="feature-maps only: the LeNet-5 to draw, a lenet5.safetensors written "
                        "by 'deepgrad reproduce lenet5' or a checkpoint of 'deepgrad train "
                        "lenet5' (or a folder holding one); default: "
                        "docs/reproductions/lenet5/lenet5.safetensors for a full run, a "
                        "LeNet-5 trained on the spot for --quick")
    return parser


# -- commands ----------------------------------------------------------------------------------
def _check_model(name: str) -> None:
    from .models import MODELS

    if name not in MODELS:
        raise CLIError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}",
                       EXIT_USAGE)


_TRAIN_OPTIONS = ("dataset", "epochs", "batch_size", "lr", "optimizer", "momentum", "seed",
                  "distort")


def _cmd_train(args) -> int:
    from .train import LAST, TrainConfig, run, saved_config
    from .train.loop import TrainingInterrupted

    _check_model(args.model)
    given = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    out = args.out if args.out is not None else f"runs/{args.model}"
    if given.get("optimizer") == "adam" and "momentum" not in given:
        given["momentum"] = None
    if args.resume:
        last = os.path.join(out, LAST)
        if not os.path.exists(last):
            raise CLIError(f"cannot resume: {last} does not exist; start the run without "
                           f"--resume")
        settings = saved_config(last).to_dict()
        if settings["model"] != args.model:
            raise CLIError(f"cannot resume: {last} is a checkpoint of model "
                           f"{settings['model']!r}, not {args.model!r}")
        settings.update(given)
    else:
        settings = dict(given, model=args.model)
    settings["out"] = out
    config = TrainConfig.from_dict(settings)
    restore = _interrupt_on_sigterm()
    try:
        trainer = run(config, resume=args.resume)
    except TrainingInterrupted as e:
        cmd = f"deepgrad train {args.model} --out {shlex.quote(out)} --resume"
        if e.saved_epoch:
            extra = f" --epochs {config.epochs}" if "epochs" in given and args.resume else ""
            sys.stderr.write(
                f"\ndeepgrad: interrupted in epoch {e.epoch}/{config.epochs}; epoch "
                f"{e.saved_epoch} is saved in {os.path.join(out, LAST)}. Resume with: "
                f"{cmd}{extra}\n")
        else:
            sys.stderr.write(
                f"\ndeepgrad: interrupted in epoch {e.epoch}/{config.epochs} before any "
                f"checkpoint was saved; run the same command again to start over\n")
        return 128 + e.signal
    finally:
        restore()
    _print_done(trainer, config)
    return 0


def _print_done(trainer, config) -> None:
    if trainer.start_epoch >= config.epochs:
        return  # run() said there was nothing to do
    best = trainer.history[trainer.best_epoch - 1]
    print(f"best test accuracy {100 * best['test_accuracy']:.2f}% (error "
          f"{100 * best['test_error']:.2f}%) in epoch {trainer.best_epoch}; saved in "
          f"{config.out}: best.safetensors, last.safetensors, metrics.jsonl, curves.png")


def _cmd_eval(args) -> int:
    from .data import DataLoader
    from .train import evaluate, load_checkpoint
    from .train.pipeline import input_transform, load_mnist

    model, config, state = load_checkpoint(args.checkpoint)
    dataset = args.dataset or config.dataset
    test_set = load_mnist(dataset, False, input_transform(config.model))
    result = evaluate(model, DataLoader(test_set, batch_size=config.test_batch_size))
    print(f"{config.model}, epoch {state['epoch']}, on the {dataset} test set "
          f"({result['samples']:,} images): loss {result['loss']:.4f}, accuracy "
          f"{100 * result['accuracy']:.2f}%, error {100 * result['error']:.2f}%")
    return 0


def _cmd_predict(args) -> int:
    import numpy as np

    from . import from_numpy, no_grad
    from .images import ImageError, read_image, to_mnist
    from .nn import functional as F
    from .train import load_checkpoint
    from .train.pipeline import input_transform

    model, config, _ = load_checkpoint(args.checkpoint)
    transform = input_transform(config.model)
    names, digits, failures = [], [], []
    for path in args.images:
        try:
            digits.append(to_mnist(read_image(path), name=path))
            names.append(path)
        except ImageError as e:
            failures.append(str(e))
    if digits:
        batch = from_numpy(np.stack(digits)[:, None])
        with no_grad():
            probs = F.softmax(model(transform(batch)), dim=1).data
        for name, p in zip(names, probs):
            k = int(p.argmax())
            print(f"{name}: {k} ({100 * float(p[k]):.1f}%)")
    sys.stdout.flush()
    for message in failures:
        sys.stderr.write(f"deepgrad: error: {_one_line(message)}\n")
    return EXIT_ERROR if failures else 0


def _cmd_summary(args) -> int:
    from . import summary
    from .models import MODELS, create

    _check_model(args.model)
    spec = MODELS[args.model]
    print(f"{args.model}: {spec.description}")
    result = summary(create(args.model), spec.input_shape)
    if result.rows:
        last = result.rows[-1]
        print(f"Trainable params before the output layer ({last.name}): "
              f"{result.trainable_params - last.trainable:,}")
    return 0


def _cmd_reproduce(args) -> int:
    from . import reproduce

    if args.name not in reproduce.available():
        raise CLIError(f"unknown reproduction {args.name!r}; choose one of: "
                       f"{', '.join(reproduce.available())}", EXIT_USAGE)
    if args.checkpoint is not None and "checkpoint" not in reproduce.options(args.name):
        raise CLIError(f"--checkpoint applies to feature-maps only, not to {args.name}",
                       EXIT_USAGE)
    out = args.out or reproduce.default_out(args.name, args.quick)
    report = reproduce.run(args.name, quick=args.quick, out_dir=out, checkpoint=args.checkpoint)
    for finding in report.findings:
        print(f"- {finding}")
    print(f"report: {os.path.join(out, 'report.md')} ({report.seconds:.0f} s)")
    if not args.out and not args.quick:
        reproduce.write_index()
    return 0


_COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict,
             "summary": _cmd_summary, "reproduce": _cmd_reproduce}


# -- entry point -------------------------------------------------------------------------------
def _interrupt_on_sigterm():
    """Make ``kill`` (SIGTERM) stop training like Ctrl-C; returns a function undoing it."""
    if not hasattr(signal, "SIGTERM"):
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


# prefixes naming internal functions, which mean nothing to a user of the command line
_PREFIXES = ("TrainConfig: ", "load: ", "save: ", "run: ", "read_image: ")


def _one_line(message: str) -> str:
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            message = message[len(prefix):]
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from .images import ImageError
    from .io import CheckpointError
    from .train import TrainingDiverged
    from .train.pipeline import DatasetError

    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:
            where = f"deepgrad {args.command} --help" if args.command else "deepgrad --help"
            raise CLIError(f"unrecognized arguments: {' '.join(extra)} (see '{where}')",
                           EXIT_USAGE)
        if args.command is None:
            raise CLIError("missing command; choose one of: train, eval, predict, summary, reproduce "
                           "(see 'deepgrad --help')", EXIT_USAGE)
        return _COMMANDS[args.command](args)
    except CLIError as e:
        status, message = e.status, str(e)
    except DatasetError as e:
        status, message = EXIT_ERROR, str(e)
        if "mnist-sample" not in message:
            message += " (or use --dataset mnist-sample, shipped with deepgrad)"
    except BrokenPipeError:  # e.g. `deepgrad predict ... | head -1`
        return EXIT_ERROR
    except (CheckpointError, ImageError, TrainingDiverged, ImportError, OSError, ValueError,
            TypeError) as e:
        if os.environ.get("DEEPGRAD_DEBUG"):
            raise
        status, message = EXIT_ERROR, str(e)
    except KeyboardInterrupt:
        sys.stderr.write("\ndeepgrad: interrupted\n")
        return 130
    sys.stderr.write(f"deepgrad: error: {_one_line(message)}\n")
    return status
