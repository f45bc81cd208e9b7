"""Reading and preparing answer text: strip the forensic tokens, read the verdict, place the tokens at inference."""

from __future__ import annotations

import re

from trainer.model.tokens import (
    CLS_TOKEN,
    FORENSIC_TOKENS,
    MASK_TOKENS,
)

_FORENSIC_RE = re.compile("|".join(re.escape(t) for t in FORENSIC_TOKENS))


_RESULT_RE = re.compile(r'("result"\s*:\s*"[^"<]*)')


_VERDICT_RE = re.compile(r"\b(fake|real|forged|authentic|tampered|genuine)\b|(伪造|篡改|真实)", re.IGNORECASE)


_FAKE_WORDS = {"fake", "forged", "tampered", "伪造", "篡改"}


def strip_forensic_tokens(text: str) -> str:
    """``text`` without any ``<cls>`` / ``<mask_i>``."""
    return _FORENSIC_RE.sub("", text)


def _last_verdict(text: str) -> re.Match | None:
    """The last verdict word: answers end with their conclusion ("…; conclusion: real"), while
    words like "Forged region" or "伪造区域" open them."""
    found = None
    for found in _VERDICT_RE.finditer(text):
        pass
    return found


def text_verdict(text: str) -> str | None:
    """"fake" / "real" from the answer's ``"result"`` field, else its last verdict word; None."""
    text = strip_forensic_tokens(text)
    m = _RESULT_RE.search(text)
    v = _VERDICT_RE.search(m.group(1)) if m else _last_verdict(text)
    if not v:
        return None
    word = (v.group(1) or v.group(2)).lower()
    return "fake" if word in _FAKE_WORDS else "real"


def _end_of_mask_value(text: str) -> int | None:
    """Index just past the JSON value of ``"mask"`` (a bracketed list), or None."""
    m = re.search(r'"mask"\s*:\s*', text)
    if not m:
        return None
    i = m.end()
    if i >= len(text) or text[i] != "[":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "[":
            depth += 1
        elif text[j] == "]":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def place_forensic_tokens(answer: str) -> str:
    """Put ``<cls>`` and ``<mask_1..32>`` at their designated places in an answer.

    The places are those of `forgery_synth.dataset.conversations` (a test round-trips every template):
    json: ``<cls>`` right after the verdict inside the ``"result"`` string (``"fake<cls>"``), the
    32 mask tokens right after the ``"mask"`` list. explain / pair: the mask tokens right after the
    region, i.e. before the first ``;`` (``；``), and ``<cls>`` after the last verdict word (the
    conclusion). conclusion: ``<cls>`` after the verdict, the mask tokens at the end (after
    ``<cls>``, so they cannot change its state). Existing forensic tokens are removed first, so a
    training answer round-trips unchanged.
    """
    text = strip_forensic_tokens(answer)
    masks = "".join(MASK_TOKENS)
    end = _end_of_mask_value(text)
    if end is None:
        semis = [i for i in (text.find(";"), text.find("；")) if i >= 0]
        end = min(semis) if semis else None
    text = text[:end] + masks + text[end:] if end is not None else text + masks
    m = _RESULT_RE.search(text)
    if m:
        return text[: m.end()] + CLS_TOKEN + text[m.end() :]
    v = _last_verdict(text)
    if v:
        return text[: v.end()] + CLS_TOKEN + text[v.end() :]
    cut = text.index(masks)
    return text[:cut] + CLS_TOKEN + text[cut:]
