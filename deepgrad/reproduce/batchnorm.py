"""Batch normalization keeps a deep network trainable under a bad initialisation or learning rate.

Ioffe & Szegedy (2015) normalise each unit's input over the minibatch, so that its
distribution stays fixed while the layers below change; they report that this allows much
higher learning rates, makes the network less sensitive to its initialisation, and keeps
saturating non-linearities out of their flat regions. Their Fig. 1 shows it on MNIST: a
3-hidden-layer sigmoid MLP with and without batch norm, test accuracy and the 15th, 50th and
85th percentiles of one unit's input over training.

Here the 10-layer MLP of the ``activations`` reproduction is trained with and without a
``BatchNorm1d`` after every hidden ``Linear``, in a careful setting and in three bad ones
(weights too small, weights too large, learning rate too high), plus the sigmoid variant that
the ``activations`` reproduction shows cannot be trained at this depth. Recorded: training
loss, test error, and the distribution of every layer's pre-activations (the input of the
non-linearity) with the fraction of saturated units.
"""
from __future__ import annotations

import numpy as np

from . import _deepnet
from .report import Report, Table, figure_path, pyplot

NAME = "batchnorm"
TITLE = "Batch normalization: training a deep network despite bad initialisation or step size"
CLAIM = ("Batch normalization lets a deep network be trained with much higher learning rates "
         "and less careful initialisation, and keeps saturating non-linearities out of their "
         "saturated regime, where the same network without it trains slowly or not at all.")
SOURCE = ("Ioffe & Szegedy, \"Batch Normalization: Accelerating Deep Network Training by "
          "Reducing Internal Covariate Shift\", ICML 2015 (arXiv:1502.03167): abstract, "
          "Sec. 1 and 3.3, Sec. 4.1 and Fig. 1")
PAPER_FIGURE = ("Ioffe & Szegedy 2015, Fig. 1 (MNIST MLP with and without batch norm: test "
                "accuracy; 15/50/85th percentiles of a unit's input over training)")
MAIN_FIGURE = "batchnorm_curves.png"

# Saturated: the non-linearity's derivative is below 7.1% of its maximum, i.e. |z| > 2 for
# tanh and |z| > 4 for the sigmoid (sigmoid(z) = (1 + tanh(z / 2)) / 2: the same point).
SATURATION = {"tanh": 2.0, "sigmoid": 4.0}
PERCENTILES = (2.5, 15, 50, 85, 97.5)
COLORS = {False: "#c0392b", True: "#2e6eb5"}
LABELS = {False: "without batch norm", True: "with batch norm"}


def settings(quick: bool) -> dict:
    if quick:
        return dict(depth=10, width=128, batch_size=64, lr=0.1, steps=300, seeds=[0],
                    loss_every=25, eval_every=100, probe_every=25, probe_batches=4,
                    sample=True)
    return dict(depth=10, width=256, batch_size=128, lr=0.1, steps=2000, seeds=[0, 1],
                loss_every=50, eval_every=200, probe_every=100, probe_batches=4, sample=False)


def cases(lr: float) -> list:
    """(key, title, activation, weight scale, learning rate, bad?) of each setting."""
    return [
        ("careful", "careful: tanh, normalised init, lr %g" % lr, "tanh", 1.0, lr, False),
        ("small_init", "weights ×0.2 (too small)", "tanh", 0.2, lr, True),
        ("large_init", "weights ×3 (too large)", "tanh", 3.0, lr, True),
        ("high_lr", "learning rate %g (too high)" % (5 * lr), "tanh", 1.0, 5 * lr, True),
        ("sigmoid", "sigmoid instead of tanh", "sigmoid", 1.0, lr, True),
    ]


def run(out_dir: str, quick: bool) -> Report:
    cfg = settings(quick)
    data = _deepnet.load_mnist(sample=cfg["sample"])
    runs: dict[tuple[str, bool], list[_deepnet.History]] = {}  # one History per seed
    for key, _, act, scale, lr, _ in cases(cfg["lr"]):
        for bn in (False, True):
            runs[key, bn] = []
            for seed in cfg["seeds"]:
                net, linears, acts = _deepnet.build_mlp(
                    cfg["depth"], cfg["width"], act, batch_norm=bn, init="xavier",
                    init_scale=scale, seed=seed)
                probe = _deepnet.PreactivationProbe(acts, SATURATION[act], PERCENTILES)
                runs[key, bn].append(_deepnet.train(
                    net, linears, data, lr=lr, steps=cfg["steps"],
                    batch_size=cfg["batch_size"], seed=seed, loss_every=cfg["loss_every"],
                    eval_every=cfg["eval_every"], grad_every=cfg["steps"],
                    grad_batches=cfg["probe_batches"], probe=probe,
                    probe_every=cfg["probe_every"],
                    label=f"{key} {'BN' if bn else 'no BN'} seed {seed}"))
                probe.remove()

    # -- numbers ---------------------------------------------------------------------------
    results = {"steps": cfg["steps"]}
    summary = {}
    for key, *_ in cases(cfg["lr"]):
        for bn in (False, True):
            hists = runs[key, bn]
            sat_end = np.mean([h.saturation[-1] for h in hists], axis=0)  # per layer
            sat_mean = np.mean([np.mean(h.saturation, axis=1) for h in hists], axis=0)
            s = dict(loss=float(np.mean([_deepnet.final_loss(h) for h in hists])),
                     error=float(np.mean([_deepnet.final_error(h) for h in hists])),
                     sat_end=sat_end, sat_over_time=sat_mean,
                     sat_peak=float(np.max(sat_mean)),
                     diverged=sum(h.diverged for h in hists),
                     grad_ratio=float(np.mean([h.grad_norms[0][0] / h.grad_norms[0][-1]
                                               for h in hists])),
                     # 85th - 15th percentile of the last hidden layer's z, before training
                     spread0=float(np.mean([h.percentiles[0][-1][3] - h.percentiles[0][-1][1]
                                            for h in hists])))
            summary[key, bn] = s
            tag = "bn" if bn else "plain"
            results[f"{key}_{tag}_loss"] = s["loss"]
            results[f"{key}_{tag}_test_error"] = s["error"]
            results[f"{key}_{tag}_saturation_end"] = float(np.mean(sat_end))
            results[f"{key}_{tag}_saturation_peak"] = s["sat_peak"]
            results[f"{key}_{tag}_grad_ratio_init"] = s["grad_ratio"]
            results[f"{key}_{tag}_spread_init"] = s["spread0"]

    # -- figures ---------------------------------------------------------------------------
    plt = pyplot()
    all_cases = cases(cfg["lr"])
    n = len(all_cases)
    n_seeds = len(cfg["seeds"])
    seeds_note = f"mean of {n_seeds} seeds, band min-max" if n_seeds > 1 else "1 seed"
    depth = cfg["depth"]

    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 7), sharex=True)
    for col, (key, title, *_r) in enumerate(all_cases):
        for bn in (False, True):
            hists = runs[key, bn]
            x, loss = _deepnet.curves(hists, "train_loss", "steps")
            _deepnet.band(axes[0, col], x, loss, COLORS[bn], LABELS[bn])
            x, err = _deepnet.curves(hists, "test_error", "eval_steps")
            _deepnet.band(axes[1, col], x, err * 100, COLORS[bn], LABELS[bn])
        _deepnet.plain_log_axis(axes[0, col])
        axes[0, col].set_title(title, fontsize=10)
        _deepnet.percent_log_axis(axes[1, col])
        axes[1, col].set_xlabel("SGD step")
        for ax in axes[:, col]:
            ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("training loss (cross-entropy)")
    axes[1, 0].set_ylabel("test error (%, log scale)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{depth}-layer MLP on MNIST, plain SGD, with and without batch norm "
                 f"({seeds_note})")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=100)
    plt.close(fig)

    sat_png = "batchnorm_saturation.png"
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 7))
    layers = np.arange(1, depth)
    for col, (key, title, act, *_r) in enumerate(all_cases):
        for bn in (False, True):
            hists = runs[key, bn]
            x = max((h.probe_steps for h in hists), key=len)
            curve = _deepnet.stack_runs([np.mean(h.saturation, axis=1) for h in hists]) * 100
            _deepnet.band(axes[0, col], x, curve, COLORS[bn], LABELS[bn])
            offset = 0.2 if bn else -0.2
            axes[1, col].bar(layers + offset, summary[key, bn]["sat_end"] * 100, width=0.4,
                             color=COLORS[bn], label=LABELS[bn])
        axes[0, col].set_title(f"{title}\n(saturated: |z| > {SATURATION[act]:g})",
                               fontsize=10)
        axes[0, col].set_xlabel("SGD step")
        axes[1, col].set_xlabel("hidden layer (1 = nearest the input)")
        axes[1, col].set_xticks(layers)
        for ax in axes[:, col]:
            ax.set_ylim(0, 100)
            ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("saturated units, all hidden layers (%)")
    axes[1, 0].set_ylabel(f"saturated units at step {cfg['steps']} (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Saturated units: pre-activation z where the non-linearity's slope is below "
                 "7% of its maximum")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, sat_png), dpi=100)
    plt.close(fig)

    pre_png = "batchnorm_preactivations.png"
    watch = depth - 1  # the last hidden layer
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 7))
    for col, (key, title, act, *_r) in enumerate(all_cases):
        h0 = {bn: runs[key, bn][0] for bn in (False, True)}
        for bn in (False, True):
            pct = np.array([p[watch - 1] for p in h0[bn].percentiles])  # (probes, 5)
            steps = h0[bn].probe_steps
            ax = axes[0, col]
            ax.fill_between(steps, pct[:, 1], pct[:, 3], color=COLORS[bn], alpha=0.25,
                            linewidth=0)
            ax.plot(steps, pct[:, 2], color=COLORS[bn], label=LABELS[bn])
            final = h0[bn].percentiles[-1]  # (layers, 5)
            offset = 0.2 if bn else -0.2
            ax = axes[1, col]
            ax.vlines(layers + offset, final[:, 0], final[:, 4], color=COLORS[bn],
                      linewidth=1)
            ax.vlines(layers + offset, final[:, 1], final[:, 3], color=COLORS[bn],
                      linewidth=5, label=LABELS[bn])
            ax.plot(layers + offset, final[:, 2], "_", color="k", markersize=6)
        for ax in axes[:, col]:
            for sign in (-1, 1):
                ax.axhline(sign * SATURATION[act], color="0.4", linestyle=":", linewidth=1)
            ax.set_yscale("symlog", linthresh=1)
            _symlog_ticks(ax)
            ax.grid(True, alpha=0.3)
        axes[0, col].set_title(f"{title}\nlayer {watch}: 15/50/85th percentiles", fontsize=10)
        axes[0, col].set_xlabel("SGD step")
        axes[1, col].set_title(f"all layers at step {cfg['steps']}", fontsize=10)
        axes[1, col].set_xlabel("hidden layer (1 = nearest the input)")
        axes[1, col].set_xticks(layers)
    axes[0, 0].set_ylabel("pre-activation z (symlog scale)")
    axes[1, 0].set_ylabel("z: 2.5-97.5th (thin), 15-85th (thick)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Pre-activations (input of the non-linearity) on {cfg['probe_batches']} "
                 f"training batches, seed {cfg['seeds'][0]}; dotted: saturation thresholds")
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, pre_png), dpi=100)
    plt.close(fig)

    # -- tables and sentences --------------------------------------------------------------
    table = Table(["setting", "batch norm", f"training loss at step {cfg['steps']}",
                   f"test error at step {cfg['steps']}", "saturated units at the end",
                   "saturated units, worst moment", f"‖g_1‖/‖g_{depth}‖ at step 0",
                   "diverged runs"],
                  caption=f"{seeds_note.split(',')[0]}; loss: mean over the last "
                          f"{cfg['loss_every']} steps; saturated: mean over the hidden layers "
                          f"of the fraction of pre-activations beyond the threshold, on "
                          f"{cfg['probe_batches'] * cfg['batch_size']} training images; "
                          f"‖g_1‖/‖g_{depth}‖: the input layer's weight-gradient norm over the "
                          f"output layer's, before training (below 1e-2: a vanishing "
                          f"gradient).")
    findings = []
    for key, title, act, scale, lr, bad in all_cases:
        plain, normed = summary[key, False], summary[key, True]
        for flag, s in ((False, plain), (True, normed)):
            table.add(title, "yes" if flag else "no", s["loss"], f"{s['error']:.2%}",
                      f"{np.mean(s['sat_end']):.1%}", f"{s['sat_peak']:.1%}",
                      s["grad_ratio"], f"{s['diverged']} of {n_seeds}")
        better = normed["loss"] < plain["loss"]
        if plain["sat_peak"] > 0.25:
            mode = (f"Without it up to {plain['sat_peak']:.0%} of the units were saturated. ")
        elif plain["grad_ratio"] < 1e-2:
            mode = (f"Without it the units were not saturated (at most "
                    f"{plain['sat_peak']:.0%}) but the gradient vanished toward the input "
                    f"(input/output layer gradient ratio {plain['grad_ratio']:.1e} at step 0, "
                    f"{normed['grad_ratio']:.2g} with batch norm). ")
        elif plain["spread0"] < 0.1:
            mode = (f"Without it the units were not saturated (at most "
                    f"{plain['sat_peak']:.0%}): the signal died out on its way up (the last "
                    f"hidden layer's pre-activations spanned {plain['spread0']:.1e} between "
                    f"their 15th and 85th percentiles at step 0, {normed['spread0']:.2g} with "
                    f"batch norm). ")
        else:
            mode = ""
        findings.append(
            f"{_cap(title)}: training loss {plain['loss']:.3g} without batch norm, "
            f"{normed['loss']:.3g} with it (test error {plain['error']:.1%} vs "
            f"{normed['error']:.1%}); saturated units at the end "
            f"{np.mean(plain['sat_end']):.0%} vs {np.mean(normed['sat_end']):.0%}. " + mode
            + ("Batch norm reached the lower loss." if better else
               "Batch norm did not reach a lower loss."))
    bad_keys = [c[0] for c in all_cases if c[5]]
    wins = sum(summary[k, True]["loss"] < summary[k, False]["loss"] for k in bad_keys)
    findings.append(f"In {wins} of the {len(bad_keys)} bad settings the network with batch norm "
                    f"ended with the lower training loss.")
    results["bad_settings"] = len(bad_keys)
    results["bad_settings_bn_wins"] = wins

    return Report(
        NAME, TITLE, CLAIM, SOURCE,
        setup=(f"Data: {data[4]}, standardised pixels. Network: {depth} Linear layers 784 -> "
               f"{cfg['width']} x {depth - 1} -> 10 (the `activations` reproduction's MLP); "
               f"with batch norm, a BatchNorm1d (learned scale and shift, momentum 0.1) between "
               f"every hidden Linear and its non-linearity. Weights: Glorot-Bengio normalised "
               f"init U(±√(6/(fan_in+fan_out))) times the setting's scale, biases 0. Plain SGD "
               f"(no momentum), batch {cfg['batch_size']}, {cfg['steps']} steps, learning rate "
               f"{cfg['lr']} unless the setting says otherwise; seeds "
               f"{', '.join(str(s) for s in cfg['seeds'])} (model, weights' Generator, data "
               f"order). Every {cfg['probe_every']} steps the pre-activations of all hidden "
               f"layers are recorded on {cfg['probe_batches']} fixed training batches (with "
               f"batch norm in training mode, its running statistics restored afterwards). "
               f"Saturated: |z| > 2 for tanh, |z| > 4 for the sigmoid (slope below 7% of the "
               f"maximum). Test error on the {'sample' if cfg['sample'] else 'full'} test set, "
               f"batch norm in eval mode (running statistics)."),
        tables=[table],
        figures=[(MAIN_FIGURE, "Training loss (log scale) and test error in each setting, "
                               "with (blue) and without (red) batch norm."),
                 (sat_png, "Saturated units over training (top) and per hidden layer at the "
                           "end (bottom)."),
                 (pre_png, "Pre-activation distributions: the last hidden layer over "
                           "training, as in Ioffe & Szegedy's Fig. 1(b, c) (top), and every "
                           "layer at the end (bottom).")],
        findings=findings, results=results)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _symlog_ticks(ax) -> None:
    """Plain-number ticks on a symlog axis (the default labels 10^0 are hard to read)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    low, high = ax.get_ylim()
    ticks = [t for t in (-100, -30, -10, -4, -2, -1, 0, 1, 2, 4, 10, 30, 100)
             if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(FixedLocator([]))
