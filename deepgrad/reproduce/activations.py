"""Sigmoid, tanh and ReLU in a deep fully connected network: vanishing gradients and speed.

Backpropagation multiplies the gradient by f'(z) at every layer on its way down (Nature 2015,
Fig. 1d). The logistic sigmoid's derivative is at most 1/4, so with weights scaled to keep the
signal's size, the gradient reaching a layer shrinks by about 4x per layer below the output:
in a 10-layer net the first layer gets almost nothing and the net does not learn. tanh
(derivative 1 at 0) and ReLU (derivative 1 where active) pass it down undiminished.

The same 10-layer MLP is trained on MNIST with each activation, the same initialisation, plain
SGD and the same learning rate; two initialisation schemes are tried, each for all three
activations. Recorded: per-layer weight-gradient norms at initialisation and during training,
training loss, test error.

Is ReLU faster than tanh? The main runs give every activation the same init, which isolates
the non-linearity but under-scales ReLU (Glorot's init keeps the variance of a tanh layer's
signal; a ReLU layer halves it, so He et al. (2015) double the weights' variance). The
variations therefore compare tanh and ReLU under settings chosen for principled reasons, not
to fit: each activation with the init derived for it, plain SGD or momentum, and 10 or 20
layers (the Nature review's "depth of 5 to 20"), each activation at the best of a few learning
rates, by the number of steps its training loss needs to fall below a target.
"""
from __future__ import annotations

import numpy as np

from . import _deepnet
from .report import Report, Table, figure_path, pyplot

NAME = "activations"
TITLE = "Sigmoid, tanh and ReLU in a deep network: vanishing gradients and training speed"
CLAIM = ("In networks with many layers the ReLU typically learns much faster than the smooth "
         "sigmoid or tanh non-linearities; with the sigmoid, whose derivative is at most 1/4, "
         "the back-propagated gradient shrinks layer by layer toward the input.")
SOURCE = ("LeCun, Bengio & Hinton, \"Deep learning\", Nature 521 (2015), section "
          "\"Backpropagation to train multilayer architectures\" (ReLU \"typically learns much "
          "faster in networks with many layers\"); Glorot & Bengio, \"Understanding the "
          "difficulty of training deep feedforward neural networks\", AISTATS 2010; Glorot, "
          "Bordes & Bengio, \"Deep sparse rectifier neural networks\", AISTATS 2011")
PAPER_FIGURE = ("none for the comparison (a claim in the text); backpropagation through f'(z) "
                "is Nature 2015, Fig. 1d")
MAIN_FIGURE = "activations_gradients.png"

COLORS = {"sigmoid": "#c0392b", "tanh": "#2e6eb5", "relu": "#27ae60"}
INITS = {"xavier": "Glorot-Bengio normalised init U(±√(6/(fan_in+fan_out)))",
         "default": "standard init U(±1/√fan_in) (PyTorch's Linear default)"}
INIT_SHORT = {"xavier": "normalised (Xavier) init", "default": "standard init U(±1/√fan_in)"}
LOSS_TARGET = 0.3  # "converged far enough": the step at which the training loss first gets below
# n * Var(W) of a square hidden layer under each init: the weights' own factor on the
# variance of the back-propagated gradient (1 for the normalised init, 1/3 for the standard)
WEIGHT_GAIN = {"xavier": 1.0, "default": 1 / 3}


# The variations (depth, init, SGD momentum): the main runs' setting, then each activation with
# its own init (He for ReLU), with momentum, and all three again with twice the depth.
VARIATIONS = [(10, "xavier", 0.0), (10, "matched", 0.0), (10, "matched", 0.9),
              (20, "xavier", 0.0), (20, "matched", 0.0), (20, "matched", 0.9)]
VARIATION_INITS = {"xavier": "Xavier for both", "matched": "Xavier for tanh, He for ReLU"}


def variation_lrs(depth: int, momentum: float, quick: bool) -> list:
    """The learning rates tried in a variation. Deeper nets take smaller steps (a 20-layer ReLU
    net with He init diverges at 0.1); momentum 0.9 takes a tenth of plain SGD's, the same
    step in the long run (lr / (1 - momentum))."""
    if quick:
        lrs = [0.1] if depth <= 10 else [0.03]
    else:
        lrs = [0.03, 0.1, 0.3] if depth <= 10 else [0.01, 0.03, 0.1]
    return [round(lr * (1 - momentum), 6) for lr in lrs]


def settings(quick: bool) -> dict:
    if quick:
        return dict(depth=10, width=128, batch_size=64, lr=0.1, steps=400, seeds=[0],
                    loss_every=25, eval_every=100, grad_every=100, grad_batches=2, sample=True,
                    sweep_lrs=[0.03, 0.3], variations=[(10, "matched", 0.0),
                                                       (20, "matched", 0.0)],
                    var_steps=150, var_loss_every=25)
    return dict(depth=10, width=256, batch_size=128, lr=0.1, steps=2500, seeds=[0, 1, 2],
                loss_every=50, eval_every=125, grad_every=250, grad_batches=4, sample=False,
                sweep_lrs=[0.03, 0.3], variations=VARIATIONS, var_steps=600, var_loss_every=50)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _steps_to(steps: list, losses: list, target: float):
    for s, v in zip(steps, losses):
        if v < target:
            return s
    return None


def _per_layer_factor(norms: np.ndarray) -> float:
    """Geometric mean of ||g_l|| / ||g_{l+1}|| over the equal-sized hidden-to-hidden layers
    (2 .. depth-1): how much the gradient shrinks (< 1) or grows per layer going down."""
    inner = norms[1:-1]
    return float((inner[0] / inner[-1]) ** (1 / (len(inner) - 1)))


def run(out_dir: str, quick: bool) -> Report:
    cfg = settings(quick)
    data = _deepnet.load_mnist(sample=cfg["sample"])

    def one_run(init: str, act: str, seed: int, lr: float, probe_grads: bool = True):
        net, linears, _ = _deepnet.build_mlp(cfg["depth"], cfg["width"], act, init=init,
                                             seed=seed)
        return _deepnet.train(
            net, linears, data, lr=lr, steps=cfg["steps"], batch_size=cfg["batch_size"],
            seed=seed, loss_every=cfg["loss_every"], eval_every=cfg["eval_every"],
            grad_every=cfg["grad_every"] if probe_grads else 0,
            grad_batches=cfg["grad_batches"], label=f"{init} {act} lr {lr} seed {seed}")

    runs = {}  # (init, activation) -> list of History, one per seed
    for init in INITS:
        for act in _deepnet.ACTIVATIONS:
            runs[init, act] = [one_run(init, act, seed, cfg["lr"]) for seed in cfg["seeds"]]
    # is the ranking an artefact of the one learning rate? the first seed at a few others
    sweep = {}  # (activation, lr) -> History
    for act in _deepnet.ACTIVATIONS:
        sweep[act, cfg["lr"]] = runs["xavier", act][0]
        for lr in cfg["sweep_lrs"]:
            sweep[act, lr] = one_run("xavier", act, cfg["seeds"][0], lr, probe_grads=False)

    variations = _run_variations(cfg, data)

    # -- numbers ---------------------------------------------------------------------------
    results = {}
    summary = {}
    for (init, act), hists in runs.items():
        g0 = np.mean([h.grad_norms[0] for h in hists], axis=0)
        g_end = np.mean([h.grad_norms[-1] for h in hists], axis=0)
        final_loss = float(np.mean([_deepnet.final_loss(h) for h in hists]))
        final_err = float(np.mean([_deepnet.final_error(h) for h in hists]))
        reach = [_steps_to(h.steps, h.train_loss, LOSS_TARGET) for h in hists]
        s = dict(g0=g0, g_end=g_end, ratio0=float(g0[0] / g0[-1]),
                 ratio_end=float(g_end[0] / g_end[-1]), factor0=_per_layer_factor(g0),
                 factor_end=_per_layer_factor(g_end), loss=final_loss, error=final_err,
                 reach=reach)
        summary[init, act] = s
        key = f"{init}_{act}"
        results[f"{key}_grad_ratio_init"] = s["ratio0"]
        results[f"{key}_grad_ratio_end"] = s["ratio_end"]
        results[f"{key}_layer_factor_init"] = s["factor0"]
        results[f"{key}_final_loss"] = final_loss
        results[f"{key}_test_error"] = final_err
        results[f"{key}_runs_reaching_loss_target"] = sum(r is not None for r in reach)
    results["steps"] = cfg["steps"]
    lrs = sorted({lr for _, lr in sweep})
    best_lr = {}
    for act in _deepnet.ACTIVATIONS:
        finals = {lr: _deepnet.final_loss(sweep[act, lr]) for lr in lrs}
        best_lr[act] = min(lrs, key=lambda lr: finals[lr])
        results[f"sweep_{act}_best_loss"] = finals[best_lr[act]]
        results[f"sweep_{act}_best_lr"] = best_lr[act]

    # -- figures ---------------------------------------------------------------------------
    plt = pyplot()
    depth = cfg["depth"]
    layers = np.arange(1, depth + 1)
    n_seeds = len(cfg["seeds"])
    seeds_note = f"mean of {n_seeds} seeds" if n_seeds > 1 else "1 seed"

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    for row, init in enumerate(INITS):
        for col, (field, when) in enumerate((("g0", "at initialisation (step 0)"),
                                             ("g_end", f"after {cfg['steps']} SGD steps"))):
            ax = axes[row, col]
            for act in _deepnet.ACTIVATIONS:
                ax.semilogy(layers, summary[init, act][field], "o-", color=COLORS[act],
                            label=act)
            if field == "g0":
                # the sigmoid's bound per layer, drawn from its top hidden layer
                bound = 0.25 * WEIGHT_GAIN[init] ** 0.5
                top = summary[init, "sigmoid"]["g0"][-2]
                ref = top * bound ** (depth - 1 - layers[:-1])
                ax.semilogy(layers[:-1], ref, ":", color="0.4",
                            label=f"×{bound:.3g} per layer (sigmoid bound)")
            ax.set_title(f"{INIT_SHORT[init]}: {when}", fontsize=10)
            ax.set_xlabel("layer (1 = input layer, %d = output layer)" % depth)
            ax.set_xticks(layers)
            ax.grid(True, which="major", alpha=0.3)
            if col == 0:
                ax.set_ylabel("‖∂loss/∂W‖ (Frobenius norm)")
            ax.legend(fontsize=8)
    fig.suptitle(f"Weight-gradient norm per layer, {depth}-layer MLP on MNIST "
                 f"({seeds_note}, averaged over {cfg['grad_batches']} batches of "
                 f"{cfg['batch_size']})")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=110)
    plt.close(fig)

    curves_png = "activations_curves.png"
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, init in enumerate(INITS):
        for act in _deepnet.ACTIVATIONS:
            hists = runs[init, act]
            x, loss = _deepnet.curves(hists, "train_loss", "steps")
            _deepnet.band(axes[row, 0], x, loss, COLORS[act], act)
            x, err = _deepnet.curves(hists, "test_error", "eval_steps")
            _deepnet.band(axes[row, 1], x, err * 100, COLORS[act], act)
        _deepnet.plain_log_axis(axes[row, 0])
        axes[row, 0].axhline(LOSS_TARGET, color="0.5", linestyle=":", linewidth=1,
                             label=f"loss {LOSS_TARGET}")
        axes[row, 0].set_ylabel("training loss (cross-entropy, mean per window)")
        axes[row, 1].set_ylabel("test error (%, log scale)")
        _deepnet.percent_log_axis(axes[row, 1])
        for ax, what in ((axes[row, 0], "training loss"), (axes[row, 1], "test error")):
            ax.set_title(f"{INIT_SHORT[init]}: {what}", fontsize=10)
            ax.set_xlabel(f"SGD step (batch {cfg['batch_size']}, lr {cfg['lr']})")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"Training a {depth}-layer MLP on MNIST with plain SGD "
                 f"({seeds_note}{'; band: min-max over seeds' if n_seeds > 1 else ''})")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, curves_png), dpi=110)
    plt.close(fig)

    ratio_png = "activations_gradient_ratio.png"
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for init, style in zip(INITS, ("-", "--")):
        for act in _deepnet.ACTIVATIONS:
            hists = runs[init, act]
            x = max((h.grad_steps for h in hists), key=len)
            ratio = np.nanmean(_deepnet.stack_runs(
                [[g[0] / g[-1] for g in h.grad_norms] for h in hists]), axis=0)
            ax.semilogy(x, ratio, style, marker="o", markersize=3,
                        color=COLORS[act], label=f"{act}, {INIT_SHORT[init]}")
    ax.set_xlabel("SGD step")
    ax.set_ylabel(f"‖∂loss/∂W_1‖ / ‖∂loss/∂W_{depth}‖")
    ax.set_title("Gradient of the input layer relative to the output layer, during training",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, ratio_png), dpi=110)
    plt.close(fig)

    # -- tables and sentences --------------------------------------------------------------
    grad_table = Table(
        ["init", "activation", "‖g_1‖ at init", f"‖g_{depth}‖ at init",
         f"‖g_1‖/‖g_{depth}‖ at init", f"per-layer factor at init (layers 2-{depth - 1})",
         "sigmoid bound: 1/4·√(n·Var W)", f"‖g_1‖/‖g_{depth}‖ after training"],
        caption=f"Weight-gradient norms (Frobenius) of the input layer (g_1, 784x{cfg['width']}) "
                f"and output layer (g_{depth}, {cfg['width']}x10), {seeds_note}. The per-layer "
                f"factor is the geometric mean of ‖g_l‖/‖g_(l+1)‖ over the equal-sized hidden "
                f"layers: below 1, the gradient shrinks going down. The bound is the most a "
                f"sigmoid layer can pass down: its derivative (at most 1/4) times the weights' "
                f"factor √(n·Var W) (1 for the normalised init, √(1/3) for the standard one).")
    train_table = Table(
        ["init", "activation", f"training loss at step {cfg['steps']}",
         f"test error at step {cfg['steps']}", f"step where training loss < {LOSS_TARGET}"],
        caption=f"Training, {seeds_note} (loss: mean over the last {cfg['loss_every']} steps; "
                f"steps to the target: per seed, '-' if never).")
    for (init, act), s in summary.items():
        bound = 0.25 * WEIGHT_GAIN[init] ** 0.5 if act == "sigmoid" else "-"
        grad_table.add(init, act, float(s["g0"][0]), float(s["g0"][-1]), s["ratio0"],
                       s["factor0"], bound, s["ratio_end"])
        reached = ", ".join("-" if r is None else str(r) for r in s["reach"])
        train_table.add(init, act, s["loss"], f"{s['error']:.2%}", reached)

    findings = []
    for init in INITS:
        sig, tanh, relu = (summary[init, a] for a in _deepnet.ACTIVATIONS)
        bound = 0.25 * WEIGHT_GAIN[init] ** 0.5
        others = "no vanishing" if min(tanh["ratio0"], relu["ratio0"]) > 0.1 else \
            "they shrink too"
        findings.append(
            f"{_cap(INIT_SHORT[init])}: at initialisation the sigmoid net's input-layer "
            f"gradient is {sig['ratio0']:.1e} times its output layer's: ×{sig['factor0']:.3f} "
            f"per hidden layer, where the sigmoid's derivative (at most 1/4) times the "
            f"weights' scale √(n·Var W) allows at most about ×{bound:.3f}. tanh's ratio is "
            f"{tanh['ratio0']:.2g} and ReLU's {relu['ratio0']:.2g}: {others}.")
        order = sorted(_deepnet.ACTIVATIONS, key=lambda a: summary[init, a]["loss"])
        findings.append(
            f"{_cap(INIT_SHORT[init])}: after {cfg['steps']} steps the training loss is "
            f"{sig['loss']:.3f} (sigmoid), {tanh['loss']:.3f} (tanh), {relu['loss']:.3f} "
            f"(ReLU), test error {sig['error']:.1%}, {tanh['error']:.1%}, "
            f"{relu['error']:.1%}; fastest to slowest: {', '.join(order)}.")
    findings += _verdict(summary, cfg)
    findings.append(
        "Learning-rate check (normalised init, seed %d): at the best of lr %s, the training "
        "loss at step %d is %s." % (
            cfg["seeds"][0], ", ".join(str(lr) for lr in lrs), cfg["steps"],
            ", ".join(f"{results[f'sweep_{a}_best_loss']:.3f} for {a} (lr {best_lr[a]})"
                      for a in _deepnet.ACTIVATIONS)))
    top = lrs[-1]
    findings.append(
        f"At the highest learning rate tried ({top}) the training loss at step {cfg['steps']} "
        "is " + ", ".join(f"{_cell_text(sweep[a, top])} for {a}" for a in _deepnet.ACTIVATIONS)
        + ".")
    sweep_table = Table(["activation"] + [f"lr {lr}" for lr in lrs],
                        caption=f"Training loss at step {cfg['steps']} for other learning "
                                f"rates (normalised init, seed {cfg['seeds'][0]}; "
                                f"'diverged' if the loss became infinite or NaN).")
    for act in _deepnet.ACTIVATIONS:
        sweep_table.add(act, *(_final_cell(sweep[act, lr]) for lr in lrs))

    var_table, var_findings = _variation_table(variations, cfg, results)
    findings += var_findings

    report = Report(
        NAME, TITLE, CLAIM, SOURCE,
        setup=(f"Data: {data[4]}, pixels scaled to [0, 1] and standardised with mean "
               f"{_deepnet.MNIST_MEAN} and std {_deepnet.MNIST_STD}. Network: {depth} Linear "
               f"layers 784 -> {cfg['width']} x {depth - 1} -> 10, the activation after every "
               f"hidden layer, softmax cross-entropy. Every activation is trained with each of "
               f"two initialisations: the {INITS['xavier']} and the {INITS['default']}; biases "
               f"0. Plain SGD (no momentum, no weight decay), learning rate {cfg['lr']}, batch "
               f"{cfg['batch_size']}, {cfg['steps']} steps, seeds {_seed_list(cfg['seeds'])} "
               f"(the seed sets deepgrad.manual_seed, the weights' Generator and the data "
               f"order). Gradient norms: the weight gradient of each layer averaged over "
               f"{cfg['grad_batches']} fixed training batches, every {cfg['grad_every']} steps, "
               f"without updating. Test error on the "
               f"{'sample' if cfg['sample'] else 'full'} test set every "
               f"{cfg['eval_every']} steps. Variations (last table; tanh against ReLU): the "
               f"same data, width {cfg['width']} and batch; {cfg['var_steps']} steps, seed "
               f"{cfg['seeds'][0]}; init 'Xavier for both' or 'Xavier for tanh, He for ReLU' "
               f"(He et al. 2015: U(±√(6/fan_in)), twice the variance, which keeps a ReLU "
               f"layer's signal size); plain SGD or SGD with momentum 0.9 at a tenth of the "
               f"learning rate; each activation at each learning rate listed, its best kept "
               f"(fewest steps to a training loss below {LOSS_TARGET}, then the lowest final "
               f"loss)."),
        tables=[grad_table, train_table, sweep_table, var_table],
        figures=[(MAIN_FIGURE, "Per-layer weight-gradient norms (log scale) at initialisation "
                               "and after training. The dotted line falls by the most a sigmoid "
                               "layer lets through: 1/4 (its largest derivative) times the "
                               "weights' scale √(n·Var W)."),
                 (curves_png, "Training loss (log scale) and test error of the three "
                              "activations under each initialisation."),
                 (ratio_png, "Input-layer over output-layer gradient norm during training.")],
        findings=findings, results=results)
    return report


def _run_variations(cfg: dict, data: tuple) -> dict:
    """(depth, init, momentum, activation) -> list of (lr, History), for tanh and ReLU."""
    cache = {}  # runs that are the same network and optimiser are run once
    out = {}
    for depth, init, momentum in cfg["variations"]:
        for act in ("tanh", "relu"):
            scheme = init if init != "matched" else ("kaiming" if act == "relu" else "xavier")
            runs = []
            for lr in variation_lrs(depth, momentum, cfg["sample"]):
                key = (depth, scheme, momentum, act, lr)
                if key not in cache:
                    net, linears, _ = _deepnet.build_mlp(depth, cfg["width"], act, init=scheme,
                                                         seed=cfg["seeds"][0])
                    cache[key] = _deepnet.train(
                        net, linears, data, lr=lr, steps=cfg["var_steps"],
                        batch_size=cfg["batch_size"], seed=cfg["seeds"][0],
                        loss_every=cfg["var_loss_every"], eval_every=cfg["var_steps"],
                        grad_every=0, momentum=momentum,
                        label=f"variation depth {depth} {scheme} momentum {momentum} {act} "
                              f"lr {lr}")
                runs.append((lr, cache[key]))
            out[depth, init, momentum, act] = runs
    return out


def _best(runs: list, steps: int) -> tuple:
    """``(lr, steps to the loss target or None, final loss, History)`` of the best run: fewest
    steps to the target, then the lowest final loss."""
    rows = []
    for lr, h in runs:
        reach = None if h.diverged else _steps_to(h.steps, h.train_loss, LOSS_TARGET)
        rows.append((lr, reach, _deepnet.final_loss(h), h))
    return min(rows, key=lambda r: (r[1] if r[1] is not None else steps + 1, r[2]))


def _variation_table(variations: dict, cfg: dict, results: dict) -> tuple:
    steps = cfg["var_steps"]
    table = Table(
        ["layers", "init", "optimiser", "learning rates tried", "tanh: best lr",
         f"tanh: steps to loss < {LOSS_TARGET}", f"tanh: loss at step {steps}",
         "ReLU: best lr", f"ReLU: steps to loss < {LOSS_TARGET}", f"ReLU: loss at step {steps}",
         "ReLU faster than tanh?"],
        caption=f"Variations: tanh against ReLU, each at its best learning rate, {steps} steps, "
                f"seed {cfg['seeds'][0]} (steps to the target: training-loss windows of "
                f"{cfg['var_loss_every']} steps; '-' if never; a diverged run counts as never).")
    held: list[str] = []
    not_held: list[str] = []
    for depth, init, momentum in cfg["variations"]:
        t = _best(variations[depth, init, momentum, "tanh"], steps)
        r = _best(variations[depth, init, momentum, "relu"], steps)
        t_steps = t[1] if t[1] is not None else steps + 1
        r_steps = r[1] if r[1] is not None else steps + 1
        lower = "ReLU's" if r[2] < t[2] else "tanh's"
        if r_steps < t_steps:
            verdict = "yes"
        elif r_steps > t_steps:
            verdict = "no: tanh is faster"
        elif t[1] is None:  # neither reached the target: the lower loss is ahead
            verdict = ("yes" if r[2] < t[2] else "no") + \
                f": neither reaches the target, {lower} loss is lower"
        else:
            verdict = f"no: as fast ({lower} final loss lower)"
        optimiser = "SGD" if not momentum else f"SGD, momentum {momentum:g}"
        lrs = ", ".join(f"{lr:g}" for lr in variation_lrs(depth, momentum, cfg["sample"]))
        table.add(depth, VARIATION_INITS[init], optimiser, lrs, f"{t[0]:g}",
                  "-" if t[1] is None else t[1], _final_cell(t[3]), f"{r[0]:g}",
                  "-" if r[1] is None else r[1], _final_cell(r[3]), verdict)
        key = f"variation_{depth}_{init}_{'momentum' if momentum else 'sgd'}"
        results[f"{key}_tanh_steps"] = t[1]
        results[f"{key}_relu_steps"] = r[1]
        results[f"{key}_tanh_loss"] = t[2]
        results[f"{key}_relu_loss"] = r[2]
        results[f"{key}_relu_faster"] = verdict.startswith("yes")
        where = f"{depth} layers, {VARIATION_INITS[init]}, {optimiser}"
        (held if verdict.startswith("yes") else not_held).append(where)
    findings = []
    if held:
        findings.append("ReLU reaches the loss target in fewer steps than tanh in: "
                        + "; ".join(held) + ".")
    if not_held:
        findings.append("ReLU is not faster than tanh in: " + "; ".join(not_held) + ".")
    return table, findings


def _verdict(summary: dict, cfg: dict) -> list:
    """Sentences saying whether each part of the claim held, from the measured values."""
    out = []
    for init in INITS:
        sig, tanh, relu = (summary[init, a] for a in _deepnet.ACTIVATIONS)
        vanish = sig["ratio0"] < 1e-2 and sig["ratio0"] < min(tanh["ratio0"], relu["ratio0"])
        vs_sigmoid = "lower than" if relu["loss"] < sig["loss"] else "not lower than"
        vs_tanh = "lower than" if relu["loss"] < tanh["loss"] else "not lower than"
        out.append(
            f"{_cap(INIT_SHORT[init])}: vanishing gradient with the sigmoid "
            f"{'confirmed' if vanish else 'not seen'}; ReLU's training loss at step "
            f"{cfg['steps']} is {vs_sigmoid} the sigmoid's and {vs_tanh} tanh's.")
    return out


def _final_cell(hist):
    return "diverged" if hist.diverged else _deepnet.final_loss(hist)


def _cell_text(hist) -> str:
    value = _final_cell(hist)
    return value if isinstance(value, str) else f"{value:.3g}"


def _seed_list(seeds: list) -> str:
    return ", ".join(str(s) for s in seeds)
