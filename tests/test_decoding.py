"""Decoding invariants on tiny random models (nanochat style): the one-LSTM decoder and the
two-LSTM (Up-Down) one."""
from __future__ import annotations

import pytest
import torch

from captioning.decoding import beam_search, greedy, sample, samples_to_hypotheses
from conftest import make_tiny_model


@pytest.fixture(scope="module", params=[1, 2], ids=["1-layer", "2-layer"])
def setup(request, tiny_bundle):
    """The tiny bundle's decoder (one LSTM) or a tiny two-LSTM decoder on the same vocabulary."""
    decoder = tiny_bundle.model.decoder if request.param == 1 else \
        make_tiny_model(tiny_bundle.vocab, layers=2).decoder
    decoder.eval()
    torch.manual_seed(0)
    grid = torch.rand(4, 49, 1280) * 3  # (B, 49, 1280) ReLU6-like features
    pooled = grid.mean(dim=1)  # (B, 1280)
    return decoder, grid, pooled, tiny_bundle.vocab


@torch.inference_mode()
def test_beam_one_equals_greedy(setup):
    decoder, grid, pooled, vocab = setup
    g = greedy(decoder, grid, pooled, vocab=vocab, max_length=10)
    b = beam_search(decoder, grid, pooled, vocab=vocab, beam_size=1, max_length=10)
    for gh, (bh,) in zip(g, b):
        assert gh.tokens == bh.tokens
        assert gh.logprob == pytest.approx(bh.logprob, abs=1e-4)


@torch.inference_mode()
def test_nbest_sorted_and_complete(setup):
    decoder, grid, pooled, vocab = setup
    for penalty in (0.0, 1.0):
        for nbest in beam_search(decoder, grid, pooled, vocab=vocab, beam_size=4, max_length=10,
                                 length_penalty=penalty):
            assert len(nbest) == 4
            scores = [h.score for h in nbest]
            assert scores == sorted(scores, reverse=True)
            assert len({tuple(h.tokens) for h in nbest}) == 4  # distinct hypotheses


@torch.inference_mode()
def test_batch_of_one_equals_single(setup):
    decoder, grid, pooled, vocab = setup
    batch = beam_search(decoder, grid, pooled, vocab=vocab, beam_size=3, max_length=10)
    for i in range(grid.shape[0]):
        (single,) = beam_search(decoder, grid[i:i + 1], pooled[i:i + 1], vocab=vocab, beam_size=3, max_length=10)
        assert [h.tokens for h in single] == [h.tokens for h in batch[i]]
        assert [h.score for h in single] == pytest.approx([h.score for h in batch[i]], abs=1e-4)


@torch.inference_mode()
def test_logprob_matches_teacher_forcing(setup):
    """The score a beam reports is the model's log-probability of its words plus <end>."""
    decoder, grid, pooled, vocab = setup
    for i, nbest in enumerate(beam_search(decoder, grid, pooled, vocab=vocab, beam_size=3, max_length=10)):
        for h in nbest:
            seq = [vocab.start_id, *h.tokens]
            target = [*h.tokens, vocab.end_id][: len(seq)]
            logits, _ = decoder(grid[i:i + 1], pooled[i:i + 1], torch.tensor([seq]))
            lp = logits.log_softmax(-1)[0, torch.arange(len(target)), torch.tensor(target)].sum()
            assert h.logprob == pytest.approx(float(lp), abs=1e-3)


@torch.inference_mode()
def test_packed_teacher_forcing_equals_padded(setup):
    """Training's forward_packed (several captions per image, no work on padding) gives the
    logits and attention of the plain forward, caption by caption."""
    decoder, grid, pooled, vocab = setup
    torch.manual_seed(1)
    lengths = [7, 5, 5, 3, 2]  # sorted descending, as training packs them
    row_image = torch.tensor([0, 2, 0, 3, 1])
    tokens = torch.randint(4, len(vocab), (len(lengths), max(lengths)))
    tokens[:, 0] = vocab.start_id
    logits, alphas = decoder.forward_packed(grid, pooled, row_image, tokens, lengths)  # (sum(lengths), V)
    for r, n in enumerate(lengths):
        i = int(row_image[r])
        ref_logits, ref_alphas = decoder(grid[i:i + 1], pooled[i:i + 1], tokens[r:r + 1, :n])  # (1, n, V)
        rows = [sum(min(m, t) for m in lengths) + r for t in range(n)]  # time-major: all rows of step 0 first
        torch.testing.assert_close(logits[rows], ref_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alphas[r, :n], ref_alphas[0], atol=1e-6, rtol=1e-5)
        assert not alphas[r, n:].any()


def _biased(decoder, word_id: int):
    """A copy of the decoder whose output layer always prefers ``word_id``."""
    import copy

    d = copy.deepcopy(decoder)
    with torch.no_grad():
        d.out.bias[word_id] += 100.0
    return d


@torch.inference_mode()
def test_stops_at_end(setup):
    decoder, grid, pooled, vocab = setup
    d = _biased(decoder, vocab.end_id)
    assert all(h.tokens == [] for h in greedy(d, grid, pooled, vocab=vocab, max_length=10))
    for nbest in beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=10):
        assert nbest[0].tokens == []
        assert all(vocab.end_id not in h.tokens for h in nbest)
    # min_length forbids <end> before that many words
    for nbest in beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=10, min_length=3):
        assert len(nbest[0].tokens) == 3


@torch.inference_mode()
def test_respects_max_length(setup):
    decoder, grid, pooled, vocab = setup
    word = vocab.stoi["dog"]
    d = _biased(decoder, word)
    for max_length in (1, 5, 9):
        assert all(len(h.tokens) == max_length for h in greedy(d, grid, pooled, vocab=vocab, max_length=max_length))
        for nbest in beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=max_length):
            assert all(len(h.tokens) <= max_length for h in nbest)
            assert nbest[0].tokens == [word] * max_length
        s = sample(d, grid, pooled, vocab=vocab, max_length=max_length, generator=torch.Generator().manual_seed(0))
        assert all(len(h.tokens) <= max_length for h in samples_to_hypotheses(s, vocab=vocab))


@torch.inference_mode()
def test_no_repeat_ngram(setup):
    decoder, grid, pooled, vocab = setup
    d = _biased(decoder, vocab.stoi["dog"])
    for nbest in beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=8, no_repeat_ngram_size=2):
        for h in nbest:
            bigrams = list(zip(h.tokens, h.tokens[1:]))
            assert len(bigrams) == len(set(bigrams))


@torch.inference_mode()
def test_no_repeat_words(setup):
    """A model that would say "dog dog dog..." says "dog" once; "a" (a repeatable word) may still repeat."""
    from captioning.vocab import REPEATABLE_WORDS

    decoder, grid, pooled, vocab = setup
    d = _biased(decoder, vocab.stoi["dog"])
    assert beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=6)[0][0].tokens.count(vocab.stoi["dog"]) > 1
    for nbest in beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=6, no_repeat_words=True):
        for h in nbest:
            words = [vocab.itos[i] for i in h.tokens]
            once = [w for w in words if w not in REPEATABLE_WORDS]
            assert len(once) == len(set(once)), words
        assert nbest[0].tokens.count(vocab.stoi["dog"]) == 1
    d = _biased(decoder, vocab.stoi["a"])
    best = beam_search(d, grid, pooled, vocab=vocab, beam_size=3, max_length=6, no_repeat_words=True)[0][0]
    assert best.tokens == [vocab.stoi["a"]] * 6


@torch.inference_mode()
def test_no_dangling_end(setup):
    """A model that would stop right after "a" goes on to a word a caption can end on."""
    import copy

    from captioning.vocab import DANGLING_WORDS

    decoder, grid, pooled, vocab = setup
    d = copy.deepcopy(decoder)
    with torch.no_grad():  # <end> above "a" above "dog" above everything else, at every step
        for word, bias in ((vocab.end_id, 100.0), (vocab.stoi["a"], 80.0), (vocab.stoi["dog"], 60.0)):
            d.out.bias[word] += bias
    kw = dict(vocab=vocab, beam_size=3, max_length=6, min_length=1)
    assert beam_search(d, grid, pooled, **kw)[0][0].tokens == [vocab.stoi["a"]]
    for nbest in beam_search(d, grid, pooled, no_dangling_end=True, **kw):
        assert nbest[0].tokens[-1] == vocab.stoi["dog"]  # "dog" or "a dog", not "a"
        for h in nbest:  # only a caption cut at max_length may end on a dangling word
            assert vocab.itos[h.tokens[-1]] not in DANGLING_WORDS or len(h.tokens) == 6


def test_decoding_options_fail_loudly():
    from captioning.decoding import Decoding

    d = Decoding.from_dict({"beam_size": 5, "no_dangling_end": True})
    assert d.replace(beam_size=None, length_penalty=1.0) == Decoding(beam_size=5, length_penalty=1.0,
                                                                    no_dangling_end=True)
    assert not d.is_greedy and Decoding(beam_size=1).is_greedy and not Decoding(beam_size=1, no_repeat_words=True).is_greedy
    with pytest.raises(ValueError, match="beam_width"):
        Decoding.from_dict({"beam_width": 3})


@torch.inference_mode()
def test_attention_is_a_distribution_per_word(setup):
    decoder, grid, pooled, vocab = setup
    for nbest in beam_search(decoder, grid, pooled, vocab=vocab, beam_size=2, max_length=6):
        h = nbest[0]
        assert h.attention.shape == (len(h.tokens), 49)
        assert torch.allclose(h.attention.sum(-1), torch.ones(len(h.tokens)), atol=1e-4)


@torch.inference_mode()
def test_sampling_seeded_reproducible(setup):
    decoder, grid, pooled, vocab = setup

    def draw(seed, **kw):
        s = sample(decoder, grid, pooled, vocab=vocab, max_length=10, generator=torch.Generator().manual_seed(seed), **kw)
        return [h.tokens for h in samples_to_hypotheses(s, vocab=vocab)]

    assert draw(1) == draw(1)
    assert draw(1, temperature=0.7, top_p=0.9) == draw(1, temperature=0.7, top_p=0.9)
    assert any(draw(seed) != draw(1) for seed in range(2, 6))
    # a vanishing nucleus keeps only the most likely word: sampling becomes greedy
    assert draw(3, top_p=1e-6) == [h.tokens for h in greedy(decoder, grid, pooled, vocab=vocab, max_length=10)]


def test_sample_logprobs_are_the_sampling_policy(setup):
    """Self-critical training needs log pi(word) of the policy actually sampled from, with gradients."""
    decoder, grid, pooled, vocab = setup
    gen = torch.Generator().manual_seed(0)
    # a vanishing nucleus is a deterministic policy: every drawn word has probability 1
    s = sample(decoder, grid, pooled, vocab=vocab, max_length=10, top_p=1e-6, generator=gen)
    assert torch.allclose(s.logprobs[s.mask], torch.zeros(int(s.mask.sum())), atol=1e-5)
    # a wide nucleus at temperature 0.5: the sampled words' log-probs come from the sharpened,
    # truncated and renormalised distribution, so they are >= the plain temperature-1 log-probs
    s = sample(decoder, grid, pooled, vocab=vocab, max_length=10, temperature=0.5, top_p=0.5, generator=gen)
    assert s.logprobs.requires_grad
    plain = decoder(grid, pooled, torch.cat([torch.full((4, 1), vocab.start_id), s.tokens], 1))[0]
    plain = plain.log_softmax(-1)[:, :-1].gather(2, s.tokens.unsqueeze(2)).squeeze(2)  # (B, T)
    assert (s.logprobs[s.mask] >= plain.detach()[s.mask] - 1e-5).all()
    (-s.logprobs.sum()).backward()
    assert decoder.out.weight.grad is not None and decoder.out.weight.grad.abs().sum() > 0
    decoder.zero_grad(set_to_none=True)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_repeated_ngram_block_matches_a_plain_loop(n):
    """The vectorised block bans exactly the words that would complete an n-gram already in the row."""
    from captioning.decoding import _block_repeated_ngrams

    g = torch.Generator().manual_seed(n)
    for length in range(0, 9):
        seqs = torch.randint(0, 4, (16, length), generator=g)  # 4 words: many repeats
        got = torch.zeros(16, 6)
        _block_repeated_ngrams(got, seqs, n)
        want = torch.zeros(16, 6)
        for r, row in enumerate(seqs.tolist()):
            for i in range(len(row) - n + 1):
                if row[i:i + n - 1] == row[len(row) - (n - 1):]:
                    want[r, row[i + n - 1]] = float("-inf")
        assert torch.equal(got.isinf(), want.isinf()), (n, length)


def _reference_beam_search(decoder, grid, pooled, *, vocab, beam_size, max_length, min_length=0, length_penalty=0.0,
                           no_repeat_ngram_size=0, no_repeat_words=False, no_dangling_end=False):
    """The straightforward beam search the fast one must match: every image's state repeated K
    times (grid copies included), all B*K rows run at every step, histories re-gathered each step."""
    from captioning.decoding import (NEG_INF, _block_dangling_end, _block_repeated_ngrams, _block_repeated_words,
                                     _finalize, _restrict, _word_mask)

    b, k = grid.shape[0], beam_size
    once = _word_mask(len(vocab), vocab.once_ids, grid.device) if no_repeat_words else None
    dangling = _word_mask(len(vocab), vocab.dangling_ids, grid.device) if no_dangling_end else None
    state = decoder.init_state(grid, pooled).repeat(k)  # B*K rows, image-major
    tokens = torch.full((b * k,), vocab.start_id, dtype=torch.long)
    scores = torch.zeros(b, k)
    scores[:, 1:] = NEG_INF
    seqs, step_logps = torch.empty(b, k, 0, dtype=torch.long), torch.empty(b, k, 0)
    alphas = torch.empty(b, k, 0, grid.shape[1])
    finished = torch.zeros(b, k, dtype=torch.bool)
    for t in range(max_length + 1):
        logits, state, alpha = decoder.step(tokens, state)
        logprobs = logits.float().log_softmax(dim=-1)  # (B*K, V)
        _restrict(logprobs, t, vocab, min_length=min_length, max_length=max_length)
        words = seqs.view(b * k, -1)
        _block_repeated_ngrams(logprobs, words, no_repeat_ngram_size)
        if once is not None:
            _block_repeated_words(logprobs, words, once)
        if dangling is not None and t < max_length:
            _block_dangling_end(logprobs, words, dangling, vocab.end_id)
        logprobs = logprobs.view(b, k, -1)  # (B, K, V)
        logprobs[finished] = NEG_INF
        logprobs[..., vocab.pad_id].masked_fill_(finished, 0.0)
        v = logprobs.shape[-1]
        scores, flat = (scores.unsqueeze(-1) + logprobs).view(b, k * v).topk(k, dim=-1)  # (B, K)
        beam, word = flat // v, flat % v
        seqs = torch.cat([seqs.gather(1, beam.unsqueeze(-1).expand_as(seqs)), word.unsqueeze(-1)], dim=-1)
        step_logps = torch.cat([step_logps.gather(1, beam.unsqueeze(-1).expand_as(step_logps)),
                                logprobs.view(b, k * v).gather(1, flat).unsqueeze(-1)], dim=-1)
        alpha = alpha.view(b, k, 1, -1).gather(1, beam.view(b, k, 1, 1).expand(b, k, 1, alpha.shape[-1]))
        alphas = torch.cat([alphas.gather(1, beam.view(b, k, 1, 1).expand_as(alphas)), alpha], dim=2)
        finished = finished.gather(1, beam) | (word == vocab.end_id)
        state = state.reorder((torch.arange(b).unsqueeze(1) * k + beam).view(-1))
        tokens = word.view(-1)
        if finished.all():
            break
    return [sorted((_finalize(seqs[i, j].tolist(), step_logps[i, j].tolist(), alphas[i, j], vocab.end_id, length_penalty)
                    for j in range(k)), key=lambda h: h.score, reverse=True) for i in range(b)]


def _assert_same_nbests(got, want):
    assert [[h.tokens for h in nb] for nb in got] == [[h.tokens for h in nb] for nb in want]  # words and n-best order
    for g, w in zip((h for nb in got for h in nb), (h for nb in want for h in nb)):
        assert g.score == pytest.approx(w.score, abs=1e-5) and g.logprob == pytest.approx(w.logprob, abs=1e-5)
        torch.testing.assert_close(g.attention, w.attention, atol=1e-6, rtol=1e-5)


OPTION_SETS = [dict(), dict(min_length=3), dict(length_penalty=1.0), dict(no_repeat_ngram_size=2),
               dict(no_repeat_words=True, no_dangling_end=True),
               dict(min_length=2, length_penalty=0.7, no_repeat_ngram_size=3, no_repeat_words=True, no_dangling_end=True)]


@pytest.fixture(scope="module")
def many_images():
    torch.manual_seed(3)
    grid = torch.rand(24, 49, 1280) * 3  # (B, 49, 1280)
    return grid, grid.mean(dim=1)


@torch.inference_mode()
@pytest.mark.parametrize("beam_size", [1, 2, 3, 5])
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o) or "plain")
def test_beam_search_equals_the_reference(setup, many_images, beam_size, options):
    """The fast beam search (finished rows skipped, one attention per parent, no grid copies) writes
    the reference's hypotheses: the same words in the same n-best order, scores and attention.
    Batches of 24 and 8 images run compacted (B*K above 16 rows and a multiple of 4), 3 and 1 in place."""
    decoder, _, _, vocab = setup
    grid, pooled = many_images
    for images in (slice(None), slice(0, 8), slice(8, 11), slice(11, 12)):
        kw = dict(vocab=vocab, beam_size=beam_size, max_length=8, **options)
        _assert_same_nbests(beam_search(decoder, grid[images], pooled[images], **kw),
                            _reference_beam_search(decoder, grid[images], pooled[images], **kw))


@torch.inference_mode()
@pytest.mark.parametrize("layers", [1, 2])
def test_ensemble_beam_search_equals_the_reference(tiny_bundle, many_images, layers):
    from captioning.decoder import EnsembleDecoder

    vocab = tiny_bundle.vocab
    ens = EnsembleDecoder([make_tiny_model(vocab, seed=s, layers=layers).decoder for s in (0, 1)]).eval()
    grid, pooled = many_images
    for images, beam_size, options in ((slice(0, 8), 3, OPTION_SETS[-1]), (slice(0, 8), 4, {}), (slice(8, 13), 3, {})):
        kw = dict(vocab=vocab, beam_size=beam_size, max_length=9, **options)
        _assert_same_nbests(beam_search(ens, grid[images], pooled[images], **kw),
                            _reference_beam_search(ens, grid[images], pooled[images], **kw))


@torch.inference_mode()
def test_compact_batches_skip_rows(setup, many_images):
    """A batch of 8 images x 3 beams runs one row per image at step 0 (padded to 16), a batch of
    3 images all its 9 rows at every step."""
    decoder, _, _, vocab = setup
    grid, pooled = many_images
    rows = []

    class Spy:
        def __getattr__(self, name):
            return getattr(decoder, name)

        def step(self, tokens, state):
            rows.append(len(tokens))
            return decoder.step(tokens, state)

    beam_search(Spy(), grid[:8], pooled[:8], vocab=vocab, beam_size=3, max_length=8)
    assert rows[0] == 16 and max(rows) <= 24
    rows.clear()
    beam_search(Spy(), grid[:3], pooled[:3], vocab=vocab, beam_size=3, max_length=8)
    assert set(rows) == {9}


@torch.inference_mode()
def test_grouped_context_equals_one_row_products():
    """The per-image batched product of the attention with the values (any row order, any number
    of rows per image, several past GROUP_ROWS) gives each row's one-row product."""
    from captioning.decoder import GROUP_ROWS, _grouped_context

    g = torch.Generator().manual_seed(0)
    values = torch.rand(5, 49, 24, generator=g)  # (I, S*S, context)
    for image in (torch.tensor([3]), torch.tensor([4, 0, 0, 2, 4, 0]), torch.randint(0, 5, (40,), generator=g),
                  torch.tensor([1] * (2 * GROUP_ROWS + 1) + [0])):
        alpha = torch.rand(len(image), 49, generator=g).softmax(-1)  # (N, S*S)
        want = torch.bmm(alpha.unsqueeze(1), values[image]).squeeze(1)  # (N, context)
        torch.testing.assert_close(_grouped_context(alpha, values, image), want, atol=1e-6, rtol=1e-6)


@torch.inference_mode()
def test_state_rows_read_their_images(setup):
    """Rows picked from rows (of an image-indexed state) step like the same rows of the repeated state."""
    decoder, grid, pooled, _ = setup
    state = decoder.init_state(grid, pooled)  # (4 rows)
    first, then = torch.tensor([3, 1, 1, 0, 2, 3]), torch.tensor([5, 0, 2, 2])
    picked = decoder.attend_ahead(state.rows(first)).rows(then)
    tokens = torch.tensor([4, 5, 6, 7])
    logits, _, alpha = decoder.step(tokens, picked)
    ref_logits, _, ref_alpha = decoder.step(tokens, decoder.init_state(grid[first[then]], pooled[first[then]]))
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-6, rtol=1e-5)


def test_repeated_word_block_matches_a_plain_loop():
    """The block bans exactly the once-words already in the row (repeatable words stay allowed)."""
    from captioning.decoding import _block_repeated_words

    g = torch.Generator().manual_seed(0)
    once = torch.tensor([False, True, True, False, True, False])  # (V,)
    for length in range(0, 7):
        seqs = torch.randint(0, 6, (16, length), generator=g)
        got = torch.zeros(16, 6)
        _block_repeated_words(got, seqs, once)
        want = torch.zeros(16, 6)
        for r, row in enumerate(seqs.tolist()):
            for w in row:
                if once[w]:
                    want[r, w] = float("-inf")
        assert torch.equal(got, want), length
