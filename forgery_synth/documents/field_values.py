"""A new value for a document field, one a forger would write: a date that exists (in the field's own
format), a name or company from `faker` in the page's language, the other sex, digits where digits
stood. Text-replace draws from here, so an edit never leaves "2024年06月56日" or "Robertlgwn".

`new_value(key, old, lang, rng)` is the one entry: `key` is the layout's field key
(`layouts.NAMES`), `old` the printed text; it returns None when the field has nothing to change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from forgery_synth.documents.layouts import LOCALES

DATE_KEYS = ("birth", "date", "expiry")
NAME_KEYS = ("name", "recipient")
COMPANY_KEYS = ("buyer", "seller", "issuer")
DIGIT_KEYS = ("id_number", "invoice_number", "quantity", "amount", "total", "certificate_number")
"""Fields whose edits change digits only (the rest of the number's format stays)."""

ETHNICITIES = ("汉", "满", "回", "苗", "壮", "藏", "蒙古", "维吾尔", "土家", "彝")

_PARSE = ("%Y年%m月%d日", "%Y-%m-%d", "%d %b %Y", "%d %B %Y")
_FORMATS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: d.strftime("%Y年%m月%d日"),
    lambda d: f"{d.year}年{d.month}月{d.day}日",
    lambda d: d.strftime("%Y-%m-%d"),
    lambda d: d.strftime("%d %b %Y").upper(),
    lambda d: d.strftime("%d %b %Y"),
    lambda d: d.strftime("%d %B %Y"),
    lambda d: d.strftime("%d %B %Y").upper(),
)


def parse_date(text: str) -> tuple[dt.date, Callable[[dt.date], str]] | None:
    """The date `text` shows and the format that writes it back exactly, or None for no known format."""
    for fmt in _PARSE:
        try:
            day = dt.datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
        for write in _FORMATS:
            if write(day) == text:
                return day, write
    return None


def _faker(lang: str, rng: np.random.Generator):
    from faker import Faker

    fake = Faker(LOCALES.get(lang, "en_US"))
    fake.seed_instance(int(rng.integers(2**31)))
    return fake


def _same_case(new: str, old: str) -> str:
    return new.upper() if old.isupper() else new


def _date(old: str, rng: np.random.Generator) -> str | None:
    parsed = parse_date(old)
    if parsed is None:
        return None
    day, write = parsed
    shift = int(rng.integers(1, 1500)) * (1 if rng.random() < 0.5 else -1)
    return write(day + dt.timedelta(days=shift))


def _digits(old: str, rng: np.random.Generator) -> str | None:
    """1-3 neighbouring digits of `old` changed; a leading digit of a run never becomes 0."""
    starts = [i for i, ch in enumerate(old) if ch.isdigit()]
    if not starts:
        return None
    i = starts[int(rng.integers(len(starts)))]
    chars = list(old)
    j = i
    for _ in range(int(rng.integers(1, 4))):
        if j >= len(old) or not old[j].isdigit():
            break
        leading = j == 0 or not old[j - 1].isdigit()
        pool = [c for c in ("123456789" if leading and len(old) > 1 else "0123456789") if c != old[j]]
        chars[j] = pool[int(rng.integers(len(pool)))]
        j += 1
    return "".join(chars)


def _name(old: str, lang: str, rng: np.random.Generator) -> str:
    fake = _faker(lang, rng)
    new = fake.name() if lang == "zh" else f"{fake.first_name()} {fake.last_name()}"
    return _same_case(new, old)


def _text(key: str, old: str, lang: str, rng: np.random.Generator) -> str | None:
    fake = _faker(lang, rng)
    zh = lang == "zh"
    if key in COMPANY_KEYS:
        return _same_case(fake.company(), old)
    if key == "sex":
        return {"M": "F", "F": "M", "男": "女", "女": "男"}.get(old)
    if key == "ethnicity":
        others = [e for e in ETHNICITIES if e != old]
        return others[int(rng.integers(len(others)))]
    if key == "address":
        return _same_case(fake.address().rsplit(" ", 1)[0] if zh else f"{fake.street_address()}, {fake.city()}", old)
    if key == "item":
        word = fake.word()
        return word + ("服务" if zh else " service") if old.endswith(("服务", " service")) else (word if zh else word.title())
    if key == "body":
        return _digits(old, rng) if zh else f"for outstanding work in {fake.bs()[:40]}"
    return _digits(old, rng)


def new_value(key: str | None, old: str, lang: str, rng: np.random.Generator) -> str | None:
    """A valid new text for field `key` whose printed text is `old` (different from it), or None.

    An unknown key (an older sidecar) changes digits only."""
    for _ in range(8):  # a faker draw can repeat the old value
        if key in DATE_KEYS:
            new = _date(old, rng)
        elif key in NAME_KEYS:
            new = _name(old, lang, rng)
        elif key in DIGIT_KEYS or key is None:
            new = _digits(old, rng)
        else:
            new = _text(key, old, lang, rng)
        if new is None or new != old:
            return new or None
    return None
