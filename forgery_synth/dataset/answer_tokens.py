"""Where the forensic tokens stand in an answer, and which verdict an answer gives.

One module for both facts, used by the shard builder, the training data, inference and
evaluation alike, so they cannot disagree:

- ``<mask_1>…<mask_32>`` stand contiguous where the run's *mask position* says (`MASK_POSITIONS`):
  ``before-answer`` (the default): before any answer text (after ``<cls>`` when it stands first),
  so their states have seen only the image and the prompt, in training as at inference, where the
  generated answer never holds the ground-truth polygon. ``after-region`` (the research notes'
  format): right after the region, i.e. after the ``"mask"`` polygon list of a ``json`` answer,
  before the first ``;``/``；`` of ``explain``/``pair`` (the region sentence), at the end of an
  answer without either (``conclusion``, inference only); under teacher forcing their states read
  the true polygon, which the generated answer does not hold.
- ``<cls>`` stands where the run's *cls position* says (`CLS_POSITIONS`):
  ``after-verdict`` (the research notes' format): right after the verdict word, inside the
  ``"result"`` string of a ``json`` answer (``"fake<cls>"``), after the last verdict word (the
  conclusion) otherwise. Under teacher forcing its state has read the verdict word, so it can
  learn the text instead of the image. ``before-verdict``: first in the answer, before any
  verdict text, so its state has seen only the image and the prompt (causal attention).
- The verdict an answer gives (`text_verdict`): its ``"result"`` field if it has one, else the
  verdict word after the last conclusion marker ("conclusion:", "结论："), else the last verdict
  word (answers end with their conclusion, and "Forged region"/"伪造区域" open every explain
  answer, whatever its label).
- What stands before any answer text (`forensic_prefix`) is given to the model at inference as the
  start of its answer, so the text is generated after the same tokens it followed in training.
"""

from __future__ import annotations

import re

CLS_TOKEN = "<cls>"
NUM_MASK_TOKENS = 32
MASK_TOKENS: list[str] = [f"<mask_{i}>" for i in range(1, NUM_MASK_TOKENS + 1)]
MASK_RUN = "".join(MASK_TOKENS)
FORENSIC_TOKENS: list[str] = [CLS_TOKEN, *MASK_TOKENS]

CLS_POSITIONS = ("after-verdict", "before-verdict")
DEFAULT_CLS_POSITION = "before-verdict"
"""Chosen by `bench/learning.py` (bench/README.md, Learning): the after-verdict `<cls>` follows the
verdict word it is shown, the before-verdict one has to read the image."""

MASK_POSITIONS = ("before-answer", "after-region")
DEFAULT_MASK_POSITION = "before-answer"
"""Chosen by `bench/learning.py` and the overfit test (bench/README.md, Learning): after the region,
the mask states learned to read the polygon of the answer, which inference does not have."""
LEGACY_LAYOUT = ("after-verdict", "after-region")
"""(cls position, mask position) of shards and checkpoints that record neither: the notes' layout."""

_FORENSIC_RE = re.compile("|".join(re.escape(t) for t in sorted(FORENSIC_TOKENS, key=len, reverse=True)))
_RESULT_RE = re.compile(r'("result"\s*:\s*"[^"<]*)')
_VERDICT_RE = re.compile(r"\b(fake|real|forged|authentic|tampered|genuine|manipulated)\b|(伪造|篡改|真实)",
                         re.IGNORECASE)
_FAKE_WORDS = {"fake", "forged", "tampered", "manipulated", "伪造", "篡改"}
_CONCLUSION_RE = re.compile(r"conclusion\s*:|结论\s*[：:]", re.IGNORECASE)


def check_cls_position(position: str) -> str:
    """`position` if it is one of `CLS_POSITIONS`, else ValueError naming the choices."""
    if position not in CLS_POSITIONS:
        raise ValueError(f"cls position must be one of {', '.join(CLS_POSITIONS)}, got {position!r}")
    return position


def check_mask_position(position: str) -> str:
    """`position` if it is one of `MASK_POSITIONS`, else ValueError naming the choices."""
    if position not in MASK_POSITIONS:
        raise ValueError(f"mask position must be one of {', '.join(MASK_POSITIONS)}, got {position!r}")
    return position


def strip_forensic_tokens(text: str) -> str:
    """``text`` without any ``<cls>`` / ``<mask_i>``."""
    return _FORENSIC_RE.sub("", text)


def _last_verdict(text: str, start: int = 0) -> re.Match | None:
    found = None
    for found in _VERDICT_RE.finditer(text, start):
        pass
    return found


def _verdict_match(text: str) -> re.Match | None:
    """The verdict word of `text` (no forensic tokens in it), by the rule of the module docstring."""
    m = _RESULT_RE.search(text)
    if m:
        return _VERDICT_RE.search(text, m.start(1), m.end(1))
    marks = list(_CONCLUSION_RE.finditer(text))
    if marks:
        after = _VERDICT_RE.search(text, marks[-1].end())
        if after:
            return after
    return _last_verdict(text)


def text_verdict(text: str) -> str | None:
    """"fake" / "real" as the answer says it (module docstring), None when it says neither.

    The one verdict reader: predict, eval, validation and the tests of the shard builder's answers
    all use it."""
    v = _verdict_match(strip_forensic_tokens(text))
    if v is None:
        return None
    word = (v.group(1) or v.group(2)).lower()
    return "fake" if word in _FAKE_WORDS else "real"


def place_cls(answer: str, position: str) -> str:
    """``answer`` with its ``<cls>`` (any number, removed first) put once at `position`; mask tokens
    untouched. after-verdict: after the verdict word (`text_verdict`'s); if the text has none, before
    the mask tokens (or at the end without them). before-verdict: first."""
    check_cls_position(position)
    text = answer.replace(CLS_TOKEN, "")
    if position == "before-verdict":
        return CLS_TOKEN + text
    plain = strip_forensic_tokens(text)
    v = _verdict_match(plain)
    if v is None:
        cut = text.find(MASK_TOKENS[0])
        cut = len(text) if cut < 0 else cut
        return text[:cut] + CLS_TOKEN + text[cut:]
    # the verdict's end in `plain` -> the same place in `text` (mask tokens may stand before it)
    seen = 0
    for m in _FORENSIC_RE.finditer(text):
        if m.start() - seen >= v.end():
            break
        seen += m.end() - m.start()
    cut = v.end() + seen
    return text[:cut] + CLS_TOKEN + text[cut:]


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


def _region_end(text: str) -> int:
    """Where ``after-region`` mask tokens go in `text` (no forensic tokens in it): after the ``"mask"``
    list, else before the first ``;``/``；``, else at the end."""
    end = _end_of_mask_value(text)
    if end is None:
        semis = [i for i in (text.find(";"), text.find("；")) if i >= 0]
        end = min(semis) if semis else len(text)
    return end


def place_masks(answer: str, position: str) -> str:
    """``answer`` with its mask tokens moved to `position` (`MASK_POSITIONS`) as one contiguous run;
    ``<cls>`` is removed (put it back with `place_cls`). An answer without mask tokens (a
    ``conclusion`` answer of the shards) keeps none."""
    check_mask_position(position)
    text = answer.replace(CLS_TOKEN, "")
    if not any(t in text for t in MASK_TOKENS):
        return text
    text = strip_forensic_tokens(text)
    if position == "before-answer":
        return MASK_RUN + text
    end = _region_end(text)
    return text[:end] + MASK_RUN + text[end:]


def place_tokens(answer: str, cls_position: str, mask_position: str) -> str:
    """A training answer's forensic tokens moved to the run's layout (the shard builder's and the
    loader's rule): the tokens it holds, no more, each at its place."""
    return place_cls(place_masks(answer, mask_position), cls_position)


def place_forensic_tokens(answer: str, cls_position: str = DEFAULT_CLS_POSITION,
                          mask_position: str = DEFAULT_MASK_POSITION) -> str:
    """Put ``<cls>`` and ``<mask_1..32>`` at their designated places (module docstring) in an answer,
    e.g. a generated one at inference. Existing forensic tokens are removed first, so an answer of
    the shard builder with the same layout round-trips unchanged."""
    return place_tokens(strip_forensic_tokens(answer) + MASK_RUN, cls_position, mask_position)


def forensic_prefix(cls_position: str = DEFAULT_CLS_POSITION, mask_position: str = DEFAULT_MASK_POSITION) -> str:
    """The forensic tokens that stand before any answer text under this layout (e.g.
    ``<cls><mask_1>…<mask_32>`` for the defaults, ``""`` for the notes' layout). Inference starts
    the model's answer with them, as every training answer started."""
    check_cls_position(cls_position)
    check_mask_position(mask_position)
    return (CLS_TOKEN if cls_position == "before-verdict" else "") + (MASK_RUN if mask_position == "before-answer" else "")
