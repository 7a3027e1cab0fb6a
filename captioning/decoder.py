"""The RNN that writes the caption: an LSTM seeded by the semantic vector (Show and Tell)
with soft additive attention over the S*S grid cells at every step (Show, Attend and Tell);
S is the encoder's grid side, the input size / 32 (9 for the default 288x288 input).

With ``layers=2`` it is the two-LSTM decoder of Up-Down (Anderson et al. 2018): an attention
LSTM reads the previous word, the mean projected grid and the language LSTM's last state, its
output is the attention query, and a language LSTM turns the attended context into the word.

The grid is projected once per image (values and attention keys), so a decoding step only
costs the LSTM cell(s), one query projection and the output layer.

:class:`EnsembleDecoder`: several decoders trained on the same vocabulary write one caption
together. At every step each member predicts the next word from its own state; the ensemble's
next-word distribution is the mean of the members' distributions (the log of the mean
probability is returned as the logits, so greedy, beam search and sampling work unchanged).
Attention maps are the members' mean.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DecoderConfig  # noqa: F401 (re-exported)


@dataclass
class DecoderState:
    h: torch.Tensor  # (N, layers * hidden) LSTM hidden states, layer by layer
    c: torch.Tensor  # (N, layers * hidden) LSTM cell states
    values: torch.Tensor  # (N, S*S, context) projected grid, fixed per image (I rows when ``image`` is set)
    keys: torch.Tensor  # (N, S*S, attention) attention keys, fixed per image (I rows when ``image`` is set)
    image: torch.Tensor | None = None  # (N,) the row of values/keys each row reads; None: row i reads row i
    attended: tuple[torch.Tensor, torch.Tensor] | None = None  # the rows' next attention, when computed
    #   ahead (:meth:`AttentionLSTMDecoder.attend_ahead`): gated context (N, context), weights (N, S*S)

    def reorder(self, index: torch.Tensor) -> "DecoderState":
        """Pick rows of h and c (beam reordering within the same image: values/keys stay)."""
        if self.image is not None or self.attended is not None:
            return self.rows(index)
        return DecoderState(self.h[index], self.c[index], self.values, self.keys)

    def repeat(self, k: int) -> "DecoderState":
        """Each image's state repeated k times in a row: N -> N*k."""
        if self.image is not None or self.attended is not None:
            return self.rows(torch.arange(len(self.h), device=self.h.device).repeat_interleave(k))
        return DecoderState(*(t.repeat_interleave(k, dim=0) for t in (self.h, self.c, self.values, self.keys)))

    def rows(self, index: torch.Tensor) -> "DecoderState":
        """The states of rows ``index`` (any rows, of any images, repeats allowed), sharing this
        state's values and keys: only h, c, the row -> image index and the attention are gathered."""
        image = index if self.image is None else self.image.index_select(0, index)
        attended = None if self.attended is None else tuple(t.index_select(0, index) for t in self.attended)
        return DecoderState(self.h.index_select(0, index), self.c.index_select(0, index), self.values, self.keys,
                            image, attended)


class AttentionLSTMDecoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.layers not in (1, 2):
            raise ValueError(f"decoder layers must be 1 or 2, not {cfg.layers}")
        self.project_grid = nn.Linear(cfg.feature_dim, cfg.context_dim)
        self.grid_dropout = nn.Dropout(cfg.dropout)
        self.att_key = nn.Linear(cfg.context_dim, cfg.attention_dim)
        self.att_query = nn.Linear(cfg.hidden_dim, cfg.attention_dim, bias=False)
        self.att_score = nn.Linear(cfg.attention_dim, 1)
        self.gate = nn.Linear(cfg.hidden_dim, 1)  # the gating scalar beta of Show, Attend and Tell
        self.init_h = nn.Linear(cfg.feature_dim, cfg.layers * cfg.hidden_dim)
        self.init_c = nn.Linear(cfg.feature_dim, cfg.layers * cfg.hidden_dim)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=0)
        if cfg.layers == 1:  # the word and the attended context in, the word out
            self.lstm = nn.LSTMCell(cfg.embed_dim + cfg.context_dim, cfg.hidden_dim)
        else:  # Up-Down: the attention LSTM sees the word, the mean grid and the language LSTM's state
            self.att_lstm = nn.LSTMCell(cfg.hidden_dim + cfg.context_dim + cfg.embed_dim, cfg.hidden_dim)
            self.lstm = nn.LSTMCell(cfg.context_dim + cfg.hidden_dim, cfg.hidden_dim)
        self.out_dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden_dim + cfg.context_dim, cfg.vocab_size)

    def init_state(self, grid: torch.Tensor, pooled: torch.Tensor) -> DecoderState:
        """grid (N, S*S, feature), pooled (N, feature) -> initial state seeded by the semantic vector."""
        values = self.grid_dropout(F.relu(self.project_grid(grid)))  # (N, S*S, context)
        keys = self.att_key(values)  # (N, S*S, attention)
        h = torch.tanh(self.init_h(pooled))  # (N, layers * hidden)
        c = torch.tanh(self.init_c(pooled))  # (N, layers * hidden)
        return DecoderState(h, c, values, keys)

    def _attend(self, query_state: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor]:
        query = self.att_query(query_state).unsqueeze(1)  # (N, 1, attention)
        if state.image is None:
            scores = self.att_score(torch.tanh(state.keys + query)).squeeze(-1)  # (N, S*S)
            alpha = scores.softmax(dim=-1)  # (N, S*S)
            context = torch.bmm(alpha.unsqueeze(1), state.values).squeeze(1)  # (N, context)
        else:  # each row reads its image's keys and values
            hidden = state.keys.index_select(0, state.image).add_(query).tanh_()  # (N, S*S, attention)
            alpha = self.att_score(hidden).squeeze(-1).softmax(dim=-1)  # (N, S*S)
            context = _grouped_context(alpha, state.values, state.image)  # (N, context)
        return torch.sigmoid(self.gate(query_state)) * context, alpha

    def attend_ahead(self, state: DecoderState) -> DecoderState:
        """The state with its rows' next attention computed now, so that the rows copied from it
        (:meth:`DecoderState.rows`, several beams extending one) share it. The one-LSTM decoder
        attends from h alone; the two-LSTM decoder's attention depends on the next word, so its
        state is returned as it is."""
        if self.config.layers != 1 or state.attended is not None:
            return state
        return dataclasses.replace(state, attended=self._attend(state.h, state))

    def _cell(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One step: tokens (N,) -> output features (N, hidden + context), next state, attention (N, S*S)."""
        if self.config.layers == 1:
            context, alpha = state.attended if state.attended is not None else self._attend(state.h, state)
            h, c = self.lstm(torch.cat([self.embed(tokens), context], dim=-1), (state.h, state.c))
            return torch.cat([h, context], dim=-1), DecoderState(h, c, state.values, state.keys, state.image), alpha
        (h_att, h_lang), (c_att, c_lang) = state.h.chunk(2, dim=-1), state.c.chunk(2, dim=-1)  # (N, hidden) each
        mean_grid = state.values.mean(dim=1)  # (N, context), or (I, context) when rows index images
        if state.image is not None:
            mean_grid = mean_grid.index_select(0, state.image)  # (N, context)
        h_att, c_att = self.att_lstm(torch.cat([h_lang, mean_grid, self.embed(tokens)], dim=-1), (h_att, c_att))
        context, alpha = self._attend(h_att, state)
        h_lang, c_lang = self.lstm(torch.cat([context, h_att], dim=-1), (h_lang, c_lang))
        state = DecoderState(torch.cat([h_att, h_lang], dim=-1), torch.cat([c_att, c_lang], dim=-1),
                             state.values, state.keys, state.image)
        return torch.cat([h_lang, context], dim=-1), state, alpha

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One word: tokens (N,) -> logits (N, V), next state, attention weights (N, S*S)."""
        features, state, alpha = self._cell(tokens, state)
        return self.out(self.out_dropout(features)), state, alpha

    def forward(self, grid: torch.Tensor, pooled: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. tokens (N, T) starts with <start>; returns logits (N, T, V) and
        attention (N, T, S*S) predicting tokens shifted by one."""
        state = self.init_state(grid, pooled)
        features, alphas = [], []
        for t in range(tokens.shape[1]):
            step_features, state, alpha = self._cell(tokens[:, t], state)
            features.append(step_features)
            alphas.append(alpha)
        features = torch.stack(features, dim=1)  # (N, T, hidden + context)
        return self.out(self.out_dropout(features)), torch.stack(alphas, dim=1)  # (N, T, V), (N, T, S*S)

    def forward_packed(self, grid: torch.Tensor, pooled: torch.Tensor, row_image: torch.Tensor,
                       tokens: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing for training, several captions per image, no work on padding.

        grid (I, S*S, feature) and pooled (I, feature) are computed once per image;
        row_image (N,) maps each caption row to its image; tokens (N, T) start with <start>;
        rows are sorted by ``lengths`` (descending), so at step t only the first rows that
        are still alive are computed. Returns logits (sum(lengths), V) in the time-major
        packed order of ``pack_padded_sequence`` and attention (N, T, S*S), zero past the end.
        """
        state = self.init_state(grid, pooled)
        state = DecoderState(state.h[row_image], state.c[row_image], state.values[row_image], state.keys[row_image])
        n, steps = tokens.shape
        alive = torch.tensor(lengths)
        features, alphas = [], torch.zeros(n, steps, grid.shape[1], device=grid.device)
        for t in range(max(lengths)):
            k = int((alive > t).sum())  # rows still inside their caption at step t
            state = DecoderState(state.h[:k], state.c[:k], state.values[:k], state.keys[:k])
            step_features, state, alpha = self._cell(tokens[:k, t], state)
            features.append(step_features)
            alphas[:k, t] = alpha
        packed = torch.cat(features, dim=0)  # (sum(lengths), hidden + context)
        return self.out(self.out_dropout(packed)), alphas


def _grouped_context(alpha: torch.Tensor, values: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The attended context of rows reading ``values[image]``: alpha (N, S*S), values (I, S*S, context)
    -> (N, context), as the one-row products of :meth:`AttentionLSTMDecoder.forward` compute it.

    The first GROUP_ROWS rows of each image are laid out per image, (I, GROUP_ROWS, S*S) with
    empty slots zero, for one batched product with the values as they are (the BLAS sums a product
    of that few rows in the order of a one-row product); any further rows of an image, one by one
    with a copy of their image's values."""
    counts = torch.bincount(image, minlength=len(values))  # (I,) rows of each image
    order = torch.argsort(image, stable=True)  # (N,) rows grouped by image
    slot = torch.empty_like(image)  # (N,) each row's place among its image's rows
    slot[order] = torch.arange(len(image), device=image.device) - (counts.cumsum(0) - counts)[image[order]]
    first = (slot < GROUP_ROWS).nonzero().squeeze(1)  # (n1,) rows in the grouped product
    rest = (slot >= GROUP_ROWS).nonzero().squeeze(1)  # (n2,) rows beyond it
    grouped = alpha.new_zeros(len(values), min(int(counts.max()), GROUP_ROWS), alpha.shape[1])  # (I, G, S*S)
    grouped[image[first], slot[first]] = alpha[first]
    context = alpha.new_empty(len(image), values.shape[2])  # (N, context)
    context[first] = torch.bmm(grouped, values)[image[first], slot[first]]  # (I, G, context) -> (n1, context)
    if len(rest):
        # (n2, 1, S*S) x (n2, S*S, context) -> (n2, context)
        context[rest] = torch.bmm(alpha[rest].unsqueeze(1), values.index_select(0, image[rest])).squeeze(1)
    return context


GROUP_ROWS = 3


@dataclass
class EnsembleState:
    members: list[DecoderState]  # one state per member, rows aligned

    def reorder(self, index: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.reorder(index) for s in self.members])

    def repeat(self, k: int) -> "EnsembleState":
        return EnsembleState([s.repeat(k) for s in self.members])

    def rows(self, index: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.rows(index) for s in self.members])


class EnsembleDecoder(nn.Module):
    """Decoders of one configuration voting at every step (the interface of AttentionLSTMDecoder)."""

    def __init__(self, members: Sequence[AttentionLSTMDecoder]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len({m.config for m in members}) != 1:
            raise ValueError("ensemble members must share one decoder configuration")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def init_state(self, grid: torch.Tensor, pooled: torch.Tensor) -> EnsembleState:
        return EnsembleState([m.init_state(grid, pooled) for m in self.members])

    def attend_ahead(self, state: EnsembleState) -> EnsembleState:
        return EnsembleState([m.attend_ahead(s) for m, s in zip(self.members, state.members)])

    def step(self, tokens: torch.Tensor, state: EnsembleState) -> tuple[torch.Tensor, EnsembleState, torch.Tensor]:
        """tokens (N,) -> log of the members' mean next-word probability (N, V), state, mean attention (N, S*S)."""
        outs = [m.step(tokens, s) for m, s in zip(self.members, state.members)]
        logprobs = torch.stack([logits.float().log_softmax(dim=-1) for logits, _, _ in outs])  # (M, N, V)
        mean = logprobs.logsumexp(dim=0) - math.log(len(outs))  # (N, V)
        alpha = torch.stack([a for _, _, a in outs]).mean(dim=0)  # (N, S*S)
        return mean, EnsembleState([s for _, s, _ in outs]), alpha
