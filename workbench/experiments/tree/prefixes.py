"""Comparing two models on text, not tokens: the probability that a text continues with a given string.

Two tokenisers split the same text differently: after " it", Gemma writes "'" then "s" where
SmolLM2 writes one token "'s". Scored per token, SmolLM2's probability of the token "'" alone
is 5e-05 while Gemma's is 0.44, a "divergence" of +9 nats that is only a tokeniser boundary.
Compared on text prefixes the two agree: both put about half their mass on text that starts
with "'".

The text-prefix probability of a string x after a prompt is P(the continuation starts with x):
the prompt's tokens are fixed (generation starts at the prompt's last token, whatever follows),
x is tokenised canonically together with the prompt, its tokens before the last one are summed,
and the last token is marginalised over every vocabulary token whose text starts with the last
token's text (" it" + "'" counts "'", "'s", "'re", ...). Ignoring the other, non-canonical
tokenisations of x is the approximation; they carry little mass in a model trained on canonical
tokens. An edge's logprob "as text" is log P(path + edge) - log P(path), so edges along a path
sum to the path's text-prefix logprob and a tokeniser boundary inside or between edges never
shows up as a divergence. Sibling edges are no longer disjoint events when one's text starts
another's: text that continues with " " includes text that continues with " between", so a
node's children need not sum to at most 1 as text.

Everything goes through the Sampler's public methods: `encode` finds the canonical tokens and
`score_candidates` gives the vocabulary mass of tokens starting with a string (its "terminator"
mass, with the end-of-sequence tokens' mass, scored separately, taken out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError
from workbench.types import RenderedInput

if TYPE_CHECKING:
    from workbench.sampler import Sampler

# The longest token text we search for, in characters (a vocabulary's longest tokens are ~16-30).
MAX_TOKEN_CHARS = 64


@dataclass(frozen=True)
class _Split:
    """A text x after the prompt, canonically tokenised: `head` (all tokens but the last, as text) + `last`."""

    text: str
    head: str
    last: str
    ids: tuple[int, ...]  # x's token ids after the prompt's


def _encode(sampler: Sampler, model: str, text: str) -> list[int] | None:
    try:
        return sampler.encode(model, text)
    except WorkbenchError:  # e.g. an empty text for a model that adds no BOS token
        return None


def _drop_last_token(sampler: Sampler, model: str, text: str, ids: list[int], start: int = 0) -> int | None:
    """The largest b >= start with encode(text[:b]) == ids[:-1]: where the last token's text begins."""
    for b in range(len(text) - 1, max(start, len(text) - MAX_TOKEN_CHARS) - 1, -1):
        if _encode(sampler, model, text[:b]) == ids[:-1]:
            return b
    return None


def prefix_logprobs(sampler: Sampler, model: str, root: RenderedInput, texts: list[str]) -> dict[str, float | None]:
    """log P(the continuation of `root` starts with x) for each non-empty x under `model` (None: not computable).

    Not computable: a model without token ids or exact candidate scoring, a prompt of one token,
    or an x whose canonical tokenisation merges into the prompt's last token.
    """
    out: dict[str, float | None] = dict.fromkeys(texts)
    capabilities = sampler.capabilities(model)
    prompt = root.text or ""
    if not (capabilities.token_ids and capabilities.candidate_scoring and prompt):
        return out
    prompt_ids = _encode(sampler, model, prompt)
    if not prompt_ids or len(prompt_ids) < 2:
        return out
    # score_candidates needs a non-empty continuation, so the prompt's last token moves into every continuation:
    # the scores are taken after `shifted` + `tail`, which is the prompt's own tokenisation.
    cut = _drop_last_token(sampler, model, prompt, prompt_ids)
    if cut is None:
        return out
    shifted = RenderedInput(mode=root.mode, text=prompt[:cut], messages=root.messages, template=root.template,
                            extra_stop=root.extra_stop)
    tail, tail_id = prompt[cut:], prompt_ids[-1]

    splits: list[_Split] = []
    for x in dict.fromkeys(t for t in texts if t):
        ids = _encode(sampler, model, prompt + x)
        if not ids or ids[: len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids):
            continue  # x merges with the prompt's last token: no text-prefix probability from this prompt
        own = ids[len(prompt_ids):]
        b = 0 if len(own) == 1 else _drop_last_token(sampler, model, prompt + x, ids, start=len(prompt) + 1)
        if b is None:
            continue
        b = max(0, b - len(prompt))
        splits.append(_Split(x, x[:b], x[b:], tuple(own)))
    if not splits:
        return out

    # One pass with no terminators: each continuation's logprob and the end-of-sequence mass after it.
    plain = sorted({tail} | {tail + s.head for s in splits} | {tail + s.text for s in splits})
    scores = sampler.score_candidates(model, shifted, plain, [1.0], [])
    logprob = dict(zip(plain, scores.logprobs[0], strict=True))
    eos_mass = dict(zip(plain, scores.end_logprobs[0], strict=True))
    token_ids = dict(zip(plain, scores.token_ids, strict=True))
    # One pass per distinct last-token text: the mass of every next token whose text starts with it.
    start_mass: dict[tuple[str, str], float] = {}
    for last in sorted({s.last for s in splits}):
        heads = sorted({tail + s.head for s in splits if s.last == last})
        masses = sampler.score_candidates(model, shifted, heads, [1.0], [last]).end_logprobs[0]
        start_mass.update({(head, last): m for head, m in zip(heads, masses, strict=True)})

    for s in splits:
        head, whole = tail + s.head, tail + s.text
        if token_ids[whole] != [tail_id, *s.ids] or token_ids[head] != [tail_id, *s.ids[:-1]]:
            continue  # the backend read another tokenisation than the one found here
        with_eos = start_mass[(head, s.last)]
        mass = math.exp(with_eos) - math.exp(eos_mass[head]) if with_eos > eos_mass[head] else 0.0
        last_token = logprob[whole] - logprob[head]  # the canonical last token: a floor if its text decodes oddly
        last_logprob = max(math.log(mass) if mass > 0 else -math.inf, last_token)
        out[s.text] = logprob[head] - logprob[tail] + last_logprob
    return out


def same_tokenisation(sampler: Sampler, model_a: str, model_b: str, texts: list[str]) -> bool:
    """Whether two models read each of these texts as the same token ids (then they are compared per token)."""
    if model_a == model_b:
        return True
    for text in texts:
        a, b = _encode(sampler, model_a, text), _encode(sampler, model_b, text)
        if a is None or a != b:
            return False
    return True
