"""The attention encoder-decoder (Luong et al. 2015; Bahdanau et al. 2015) on ``pylstm.nn``.

* Encoder: embeddings, then a bidirectional multi-layer ``pylstm.LSTM`` over the source with its
  lengths; each direction has ``hidden // 2`` units, so the keys are ``hidden`` wide (as
  OpenNMT-py's ``brnn``). The decoder's initial state per layer is the encoder's final state of
  that layer, both directions concatenated (Sutskever et al.'s bridge, no parameters).
* Decoder: a multi-layer ``pylstm.LSTM`` run one step at a time (input feeding or Bahdanau), or
  over the whole target in one engine call when nothing feeds back (Luong scores without input
  feeding, and ``attention="none"``).
* ``attention``: ``dot`` / ``general`` / ``concat`` score the decoder's new top state against the
  keys (Luong); ``concat`` is the additive score ``v . tanh(W [h; k])`` on that state.
  ``additive`` is Bahdanau's: the query is the previous top state and the context enters the
  LSTM's input. ``none`` is the plain encoder-decoder. The attentional state is
  ``tanh(W_c [h; context])``; with ``input_feeding`` it is fed to the next step's input.
* Output: ``Linear(hidden, tgt_vocab)`` after dropout, its weight tied to the target embeddings
  when ``tie_embeddings`` (needs ``emb == hidden``).

The same :meth:`Seq2Seq.step` serves teacher forcing (recorded, for gradients) and decoding
(arrays, inference), so training and translation compute one function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm import autograd as A
from pylstm import nn
from pylstm.plugins import TaskError

__all__ = ["ATTENTIONS", "Seq2Seq", "TranslatorConfig"]

ATTENTIONS = ("dot", "general", "concat", "additive", "none")


@dataclass(frozen=True)
class TranslatorConfig:
    """The network's sizes and switches (saved as the run's ``model.json``)."""

    src_vocab: int
    tgt_vocab: int
    emb: int = 256
    hidden: int = 256
    layers: int = 1
    attention: str = "general"
    input_feeding: bool = True
    dropout: float = 0.2
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("src_vocab", "tgt_vocab", "emb", "hidden", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.hidden % 2:
            raise TaskError(f"hidden: expected an even number (two encoder directions of "
                            f"hidden/2), got {self.hidden}")
        if self.attention not in ATTENTIONS:
            raise TaskError(f"--attention: expected one of {', '.join(ATTENTIONS)}, got "
                            f"{self.attention!r}")
        for name in ("input_feeding", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise TaskError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise TaskError(f"--dropout: expected a number in [0, 1), got {self.dropout!r}")
        if self.tie_embeddings and self.emb != self.hidden:
            raise TaskError(f"--tie-embeddings needs --emb equal to --hidden, got emb "
                            f"{self.emb} and hidden {self.hidden}")

    @property
    def recurrent_feed(self) -> bool:
        """Whether each decoder step reads something the previous step computed besides its
        state (so teacher forcing runs step by step)."""
        return self.attention == "additive" or self.input_feeding

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> TranslatorConfig:
        """A config read back from ``where``, every key checked (errors name the file)."""
        if not isinstance(data, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        missing = sorted({"src_vocab", "tgt_vocab"} - set(data))
        if unknown or missing:
            raise TaskError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        try:
            return cls(**data)
        except TaskError as exc:
            raise TaskError(f"{where}: {exc}") from None


class Seq2Seq(nn.Module):
    """Encoder, attention decoder and output layer; see the module docstring."""

    def __init__(self, cfg: TranslatorConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        e, h, layers = cfg.emb, cfg.hidden, cfg.layers
        rng = np.random.default_rng(seed)

        def s() -> int:
            return int(rng.integers(2**31))

        self.src_embed = nn.Embedding(cfg.src_vocab, e, padding_idx=0, seed=s())
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, e, padding_idx=0, seed=s())
        for emb in (self.src_embed, self.tgt_embed):  # N(0, 1/e): unit-variance LSTM inputs
            emb.weight.data *= np.float32(1 / np.sqrt(e))
        self.encoder = pylstm.LSTM(e, h // 2, num_layers=layers, bidirectional=True,
                                   batch_first=True, dropout=cfg.dropout, seed=s())
        feed = h if cfg.recurrent_feed else 0
        self.decoder = pylstm.LSTM(e + feed, h, num_layers=layers, batch_first=True,
                                   dropout=cfg.dropout, seed=s())
        if cfg.attention in ("dot", "general"):
            self.attn = nn.Attention(h, h, score=cfg.attention, seed=s())
        elif cfg.attention in ("concat", "additive"):
            self.attn = nn.Attention(h, h, score="additive", attn_dim=h, seed=s())
        self.combine = nn.Linear(h if cfg.attention == "none" else 2 * h, h, bias=False,
                                 seed=s())
        self.drop = nn.Dropout(cfg.dropout, seed=s())
        self.out = nn.Linear(h, cfg.tgt_vocab, seed=s())
        if cfg.tie_embeddings:
            self.out.weight = self.tgt_embed.weight

    # ------------------------------------------------------------------ encoder
    def encode(self, src: np.ndarray, src_len: np.ndarray) -> tuple[Any, Any, np.ndarray]:
        """``(keys [B, S, H], (h0, c0) [layers, B, H] each, mask [B, S])`` for padded source
        ids ``[B, S]`` and their lengths."""
        mask = np.arange(src.shape[1])[None, :] < np.asarray(src_len)[:, None]
        keys, (h_n, c_n) = self.encoder(self.drop(self.src_embed(src)),
                                        lengths=np.asarray(src_len))
        layers = self.cfg.layers

        def join(state: Any) -> Any:  # [layers*2, B, H/2] -> [layers, B, H]
            return A.stack([A.concat([state[2 * i], state[2 * i + 1]], axis=1)
                            for i in range(layers)], axis=0)

        return keys, (join(h_n), join(c_n)), mask

    # ------------------------------------------------------------------ decoder
    def init_feed(self, batch: int) -> np.ndarray:
        """The attentional state before the first step (zeros)."""
        return np.zeros((batch, self.cfg.hidden), np.float32)

    def step(self, emb_t: Any, state: tuple[Any, Any, Any], keys: Any,
             mask: np.ndarray) -> tuple[Any, tuple[Any, Any, Any], Any]:
        """One decoder step: ``(attentional state [B, H], (h, c, feed), weights [B, S] or
        None)`` from the previous token's embedding ``[B, E]`` and ``state`` = ``(h [layers,
        B, H], c, feed [B, H])``."""
        cfg = self.cfg
        h, c, feed = state
        b = emb_t.shape[0]
        context = weights = None
        if cfg.attention == "additive":
            context, weights = self.attn(h[cfg.layers - 1], keys, mask=mask)
            x = A.concat([emb_t, context], axis=1)
        elif cfg.input_feeding:
            x = A.concat([emb_t, feed], axis=1)
        else:
            x = emb_t
        out, (h, c) = self.decoder(x.reshape(b, 1, x.shape[1]), (h, c))
        query = out.reshape(b, cfg.hidden)
        if cfg.attention == "none":
            att = A.tanh(self.combine(query))
        else:
            if cfg.attention != "additive":
                context, weights = self.attn(query, keys, mask=mask)
            att = A.tanh(self.combine(A.concat([query, context], axis=1)))
        return att, (h, c, att), weights

    def logits(self, att: Any) -> Any:
        """Output scores ``[..., V]`` from attentional states."""
        return self.out(self.drop(att))

    def teacher_forced(self, src: np.ndarray, src_len: np.ndarray,
                       tgt_in: np.ndarray) -> Any:
        """Logits ``[B, T, V]`` of every target position given the true previous tokens."""
        keys, (h, c), mask = self.encode(src, src_len)
        emb = self.drop(self.tgt_embed(tgt_in))
        b, t = tgt_in.shape
        if not self.cfg.recurrent_feed:  # the whole target in one engine call
            out, _ = self.decoder(emb, (h, c))
            if self.cfg.attention == "none":
                att = A.tanh(self.combine(out))
            else:
                context, _ = self.attn(out, keys, mask=mask)
                att = A.tanh(self.combine(A.concat([out, context], axis=2)))
            return self.logits(att)
        state = (h, c, A.tensor(self.init_feed(b)))
        atts = []
        for i in range(t):
            att, state, _ = self.step(emb[:, i], state, keys, mask)
            atts.append(att)
        return self.logits(A.stack(atts, axis=1))
