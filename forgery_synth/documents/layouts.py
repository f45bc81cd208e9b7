"""What each kind of document holds and where: printed labels, field values from `faker` (zh_CN or
en_US), frame lines, a portrait box, seals. A layout is a pure function of (kind, lang, rng,
faker seeded from the page seed); `render.py` draws it.

Every field has a key, its English and Chinese names (the answer sentences name it in either
language), its text, font family, size and colour; positions are in the page frame before the
scan chain."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgery_synth.documents.fonts import fit_size

KINDS = ("id-card", "invoice", "certificate")
LANGS = ("zh", "en")
LOCALES = {"zh": "zh_CN", "en": "en_US"}
SIZES = {"id-card": (856, 540), "invoice": (900, 1160), "certificate": (1100, 780)}
INK = (25, 25, 30)
LABEL_INK = (70, 90, 120)

NAMES = {  # field key -> (English name, Chinese name)
    "name": ("Name", "姓名"), "sex": ("Sex", "性别"), "ethnicity": ("Ethnicity", "民族"),
    "birth": ("Date of birth", "出生日期"), "address": ("Address", "住址"), "id_number": ("ID number", "公民身份号码"),
    "expiry": ("Expiry date", "有效期限"), "invoice_number": ("Invoice number", "发票号码"), "date": ("Date", "日期"),
    "buyer": ("Buyer", "购买方名称"), "seller": ("Seller", "销售方名称"), "item": ("Item", "货物名称"),
    "quantity": ("Quantity", "数量"), "amount": ("Amount", "金额"), "total": ("Total amount", "价税合计"),
    "recipient": ("Recipient", "获奖人"), "body": ("Citation", "证书内容"), "certificate_number": ("Certificate number", "证书编号"),
    "issuer": ("Issued by", "颁发单位"),
}


@dataclass
class Text:
    """One run of text on the page: a printed label (field None) or a field's value."""

    text: str
    xy: tuple[int, int]
    size: int
    family: str = "sans"
    colour: tuple[int, int, int] = INK
    field: str | None = None
    anchor: str = "la"


@dataclass
class Page:
    """A document before drawing: size (w, h), paper colour, texts, frame lines, portrait box, seals."""

    kind: str
    lang: str
    size: tuple[int, int]
    paper: tuple[int, int, int]
    texts: list[Text] = field(default_factory=list)
    lines: list[tuple[int, int, int, int]] = field(default_factory=list)
    portrait: tuple[int, int, int, int] | None = None
    seals: list[dict] = field(default_factory=list)


def _label_value(page: Page, key: str, value: str, x: int, y: int, size: int, value_x: int, width: int,
                 family: str = "sans") -> None:
    en, zh = NAMES[key]
    label = zh if page.lang == "zh" else en
    page.texts.append(Text(label, (x, y), max(10, int(size * 0.8)), "hei" if page.lang == "zh" else "sans", LABEL_INK))
    page.texts.append(Text(value, (value_x, y), fit_size(value, family, size, width), family, INK, key))


def _money(rng: np.random.Generator, lo: float, hi: float) -> str:
    return f"{rng.uniform(lo, hi):.2f}"


def id_card(page: Page, fake, rng: np.random.Generator) -> None:
    """A national ID card: name, sex, birth date, address, number; portrait on the right."""
    w, h = page.size
    zh = page.lang == "zh"
    page.portrait = (int(w * 0.64), int(h * 0.14), int(w * 0.93), int(h * 0.70))
    if zh:
        number = fake.ssn()
        sex = "男" if int(number[16]) % 2 else "女"
        birth = f"{number[6:10]}年{int(number[10:12])}月{int(number[12:14])}日"
        address = fake.address().rsplit(" ", 1)[0]
        title = "居民身份证"
        rows = [("name", fake.name()), ("sex", sex), ("ethnicity", "汉"), ("birth", birth), ("address", address)]
    else:
        number = fake.bothify("??#######").upper()
        born = fake.date_of_birth(minimum_age=18, maximum_age=80)
        birth = born.strftime("%d %b %Y").upper()
        address = fake.street_address() + ", " + fake.city()
        title = "IDENTITY CARD"
        rows = [("name", fake.name().upper()), ("sex", str(rng.choice(["M", "F"]))), ("birth", birth),
                ("address", address), ("expiry", fake.date_between("+1y", "+10y").strftime("%d %b %Y").upper())]
    page.texts.append(Text(title, (int(w * 0.06), int(h * 0.05)), 30, "hei" if zh else "sans", (40, 60, 110)))
    y, step, size = int(h * 0.17), int(h * 0.105), 26
    for key, value in rows:
        _label_value(page, key, value, int(w * 0.06), y, size, int(w * 0.22), int(w * 0.40))
        y += step
    _label_value(page, "id_number", number, int(w * 0.06), int(h * 0.84), 30, int(w * 0.34), int(w * 0.60), "mono")


def invoice(page: Page, fake, rng: np.random.Generator) -> None:
    """An invoice: number, date, buyer, seller, three item rows with amounts, the total, a seal."""
    w, h = page.size
    zh = page.lang == "zh"
    page.texts.append(Text("增值税普通发票" if zh else "INVOICE", (w // 2, int(h * 0.05)), 40, "serif", (150, 40, 40),
                           anchor="ma"))
    page.lines += [(int(w * 0.05), int(h * 0.12), int(w * 0.95), int(h * 0.12))]
    x, vx = int(w * 0.07), int(w * 0.30)
    _label_value(page, "invoice_number", fake.numerify("########"), x, int(h * 0.15), 24, vx, int(w * 0.3), "mono")
    _label_value(page, "date", fake.date_between("-2y", "today").strftime("%Y年%m月%d日" if zh else "%Y-%m-%d"),
                 x, int(h * 0.20), 24, vx, int(w * 0.4))
    _label_value(page, "buyer", fake.company(), x, int(h * 0.27), 24, vx, int(w * 0.6))
    _label_value(page, "seller", fake.company(), x, int(h * 0.32), 24, vx, int(w * 0.6))
    top, row = int(h * 0.40), int(h * 0.065)
    page.lines += [(x, top - 10, int(w * 0.93), top - 10), (x, top + 4 * row, int(w * 0.93), top + 4 * row)]
    heads = [("item", x), ("quantity", int(w * 0.55)), ("amount", int(w * 0.72))]
    for key, hx in heads:
        en, zh_name = NAMES[key]
        page.texts.append(Text(zh_name if zh else en, (hx, top), 20, "hei" if zh else "sans", LABEL_INK))
    total = 0.0
    for k in range(3):
        y = top + (k + 1) * row
        item = fake.word() + ("服务" if zh else " service") if k % 2 else (fake.word() if zh else fake.word().title())
        qty = int(rng.integers(1, 20))
        amount = _money(rng, 10, 5000)
        total += float(amount)
        page.texts += [Text(item, (x, y), 22, "sans", INK, "item"), Text(str(qty), (heads[1][1], y), 22, "mono", INK, "quantity"),
                       Text(amount, (heads[2][1], y), 22, "mono", INK, "amount")]
    _label_value(page, "total", f"{'¥' if zh else '$'}{total:.2f}", x, top + 5 * row, 26, int(w * 0.30), int(w * 0.4), "mono")
    page.seals.append({"text": page_seller(page), "x": int(w * 0.62), "y": int(h * 0.70), "diameter": int(w * 0.22),
                       "ink_seed": int(rng.integers(2**31)), "angle": float(rng.uniform(-20, 20))})


def page_seller(page: Page) -> str:
    """The seller's (or issuer's) name, for the seal's text."""
    for t in page.texts:
        if t.field in ("seller", "issuer"):
            return t.text[:16]
    return ""


def certificate(page: Page, fake, rng: np.random.Generator) -> None:
    """A certificate: title, recipient, citation, number, date, issuer and its seal."""
    w, h = page.size
    zh = page.lang == "zh"
    page.lines += [(30, 30, w - 30, 30), (30, h - 30, w - 30, h - 30), (30, 30, 30, h - 30), (w - 30, 30, w - 30, h - 30)]
    page.texts.append(Text("荣誉证书" if zh else "CERTIFICATE", (w // 2, int(h * 0.08)), 56, "serif", (160, 120, 30), anchor="ma"))
    name = fake.name()
    page.texts.append(Text(name, (int(w * 0.12), int(h * 0.30)), 40, "serif", INK, "recipient"))
    body = (f"在{fake.year()}年度{fake.job()[:8]}工作中表现突出，特发此证，以资鼓励。" if zh
            else f"for outstanding work in {fake.bs()[:40]}")
    page.texts.append(Text(body, (int(w * 0.12), int(h * 0.44)), fit_size(body, "serif", 28, int(w * 0.76)), "serif", INK, "body"))
    x, vx = int(w * 0.12), int(w * 0.36)
    _label_value(page, "certificate_number", fake.bothify("??-######").upper() if not zh else fake.numerify("证字第######号"),
                 x, int(h * 0.62), 24, vx, int(w * 0.3), "mono" if not zh else "sans")
    _label_value(page, "date", fake.date_between("-3y", "today").strftime("%Y年%m月%d日" if zh else "%d %B %Y"),
                 x, int(h * 0.69), 24, vx, int(w * 0.3))
    _label_value(page, "issuer", fake.company(), x, int(h * 0.76), 24, vx, int(w * 0.4))
    page.seals.append({"text": page_seller(page), "x": int(w * 0.62), "y": int(h * 0.56), "diameter": int(h * 0.30),
                       "ink_seed": int(rng.integers(2**31)), "angle": float(rng.uniform(-20, 20))})


BUILDERS = {"id-card": id_card, "invoice": invoice, "certificate": certificate}
PAPERS = {"id-card": ((222, 236, 240), (236, 228, 214)), "invoice": ((250, 248, 242), (244, 246, 240)),
          "certificate": ((252, 246, 230), (246, 242, 232))}


def build_page(kind: str, lang: str, rng: np.random.Generator, fake) -> Page:
    """The layout of one page; `fake` is a Faker of `LOCALES[lang]` already seeded."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown document kind {kind!r}; expected one of {', '.join(KINDS)}")
    if lang not in LANGS:
        raise ValueError(f"unknown document language {lang!r}; expected one of {', '.join(LANGS)}")
    papers = PAPERS[kind]
    page = Page(kind, lang, SIZES[kind], papers[int(rng.integers(len(papers)))])
    BUILDERS[kind](page, fake, rng)
    return page
