"""Field values of business documents: how they are drawn, written and compared.

Each field has a type; a value of that type has one canonical form (what a target record
holds) and many written forms (what a document shows). :func:`normalize` maps any written
form a model may answer with to a comparable key, or None when the text is not a value of
that type:

    text      names, addresses, payment terms: blanks collapsed, case-folded
    id        invoice / order / policy numbers: blanks stripped, case kept (``INV-7`` != ``inv-7``)
    email     blanks stripped, case-folded
    phone     the ASCII digits, with a leading ``+`` when written
    currency  a three-letter ISO code, case-folded to upper (``eur`` == ``EUR``)
    date      a ``datetime.date`` from ``YYYY-MM-DD``, ``YYYY/MM/DD``, ``DD.MM.YYYY`` (day
              first, the dotted convention), ``12 Mar 2024``, ``12-Mar-2024``, ``March 12, 2024``
              or ``Mar 12 2024``; other numeric orders (``03/12/2024``) are ambiguous and rejected
    amount    a ``Decimal`` of the number with currency symbols / codes and blanks removed;
              thousands separators ``,`` ``.`` ``'`` or a blank; when ``,`` and ``.`` both occur the
              last one is the decimal mark; a lone separator (once) followed by exactly three
              digits is a thousands separator, otherwise it is the decimal mark
              (``1,234`` = 1234, ``12,50`` = 12.5, ``1.234,56`` = 1234.56)

Only ASCII digits count as digits everywhere (``"１２"`` is not a number), and every value is
bounded to ``MAX_VALUE_CHARS`` characters before it is looked at. JSON numbers (int / float,
never bool) are accepted for amounts; other types are wrong for every field.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal, InvalidOperation

import numpy as np

MAX_VALUE_CHARS = 256
TYPES = ("text", "id", "email", "phone", "currency", "date", "amount")
DIGITS = "0123456789"

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
MONTH_NUMBER = {m.lower(): i + 1 for i, m in enumerate(MONTHS)} | {m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)}
# written date formats (the generator's and the normaliser's): strftime-like, own month names
DATE_FORMATS = ("iso", "slash_ymd", "dotted_dmy", "d_mon_y", "d-mon-y", "month_d_y", "mon_d_y")

# currency code -> (symbol or None, decimals)
CURRENCIES = {"USD": ("$", 2), "EUR": ("€", 2), "GBP": ("£", 2), "JPY": ("¥", 0), "CHF": (None, 2),
              "INR": ("₹", 2), "CAD": (None, 2), "SEK": (None, 2)}
# number styles: (thousands separator, decimal mark)
NUMBER_STYLES = {"en": (",", "."), "de": (".", ","), "fr": (" ", ","), "ch": ("'", "."), "plain": ("", ".")}
_SYMBOLS = "".join(s for s, _ in CURRENCIES.values() if s)


def _bounded(value) -> str | None:
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        return None
    return value


def _ascii_digits(text: str) -> bool:
    return bool(text) and all(c in DIGITS for c in text)


def format_date(date: datetime.date, style: str) -> str:
    """``date`` written in one of :data:`DATE_FORMATS`."""
    d, m, y = date.day, date.month, date.year
    month = MONTHS[m - 1]
    return {"iso": f"{y:04d}-{m:02d}-{d:02d}", "slash_ymd": f"{y:04d}/{m:02d}/{d:02d}",
            "dotted_dmy": f"{d:02d}.{m:02d}.{y:04d}", "d_mon_y": f"{d} {month[:3]} {y}",
            "d-mon-y": f"{d:02d}-{month[:3]}-{y}", "month_d_y": f"{month} {d}, {y}",
            "mon_d_y": f"{month[:3]} {d} {y}"}[style]


def parse_date(text: str) -> datetime.date | None:
    """The date written in one of the unambiguous forms of the module docstring, else None."""
    text = " ".join(text.split())
    m = re.fullmatch(r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})", text)
    if m:
        y, _, mo, d = m.groups()
    elif m := re.fullmatch(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})", text):
        d, mo, y = m.groups()
    elif m := re.fullmatch(r"([0-9]{1,2})[ -]([A-Za-z]+)\.?[ -]([0-9]{4})", text):
        d, name, y = m.groups()
        mo = MONTH_NUMBER.get(name.lower())
    elif m := re.fullmatch(r"([A-Za-z]+)\.? ([0-9]{1,2}),? ([0-9]{4})", text):
        name, d, y = m.groups()
        mo = MONTH_NUMBER.get(name.lower())
    else:
        return None
    if mo is None:
        return None
    try:
        return datetime.date(int(y), int(mo), int(d))
    except ValueError:
        return None


def format_amount(value: Decimal, currency: str, number_style: str, placement: str) -> str:
    """``value`` with ``currency``'s decimals in ``number_style`` (:data:`NUMBER_STYLES`), the
    currency shown per ``placement``: ``symbol`` ($1,234.56; the code where the currency has
    no symbol), ``code_before`` (USD 1,234.56), ``code_after`` (1.234,56 EUR) or ``none``."""
    thousands, mark = NUMBER_STYLES[number_style]
    decimals = CURRENCIES[currency][1]
    text = f"{value:.{decimals}f}"
    whole, _, frac = text.partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    number = thousands.join([whole] + groups) + (mark + frac if decimals else "")
    symbol = CURRENCIES[currency][0]
    if placement == "symbol":
        return f"{symbol}{number}" if symbol else f"{currency} {number}"
    if placement == "code_before":
        return f"{currency} {number}"
    if placement == "code_after":
        return f"{number} {currency}"
    return number


def parse_amount(value) -> Decimal | None:
    """The number of an amount (module docstring rules), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) if abs(value) < 10 ** 15 else None
    if isinstance(value, float):
        return Decimal(repr(value)) if abs(value) < 1e15 else None
    text = _bounded(value)
    if text is None:
        return None
    code = re.fullmatch(r"\s*(?:[A-Za-z]{3}\s)?(.*?)(?:\s[A-Za-z]{3})?\s*", text)
    text = code.group(1)
    text = "".join(c for c in text if c not in _SYMBOLS and c not in " '\u00a0\u202f")
    negative = text.startswith("-")
    text = text[negative:]
    if not text or any(c not in DIGITS + ",." for c in text) or not text[0] in DIGITS:
        return None
    if "," in text and "." in text:
        mark = "," if text.rfind(",") > text.rfind(".") else "."
        other = "." if mark == "," else ","
        if text.count(mark) != 1:
            return None
        text = text.replace(other, "").replace(mark, ".")
    elif "," in text or "." in text:
        sep = "," if "," in text else "."
        whole, _, frac = text.rpartition(sep)
        if text.count(sep) > 1 or len(frac) == 3:  # thousands separator(s)
            if any(len(g) != 3 for g in text.split(sep)[1:]) or len(text.split(sep)[0]) > 3:
                return None
            text = text.replace(sep, "")
        else:
            text = f"{whole}.{frac}"
    parts = text.split(".")
    if any(not _ascii_digits(p) for p in parts) or len(text) > 20:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return -number if negative else number


def normalize(value, kind: str):
    """The comparison key of ``value`` as a field of type ``kind`` (module docstring), or None
    when it is not a value of that type."""
    if kind not in TYPES:
        raise ValueError(f"unknown field type {kind!r}; types: {', '.join(TYPES)}")
    if kind == "amount":
        return parse_amount(value)
    text = _bounded(value)
    if text is None:
        return None
    if kind == "text":
        key = " ".join(text.split()).casefold()
    elif kind in ("id", "email"):
        key = "".join(text.split())
        key = key.casefold() if kind == "email" else key
    elif kind == "phone":
        plus = text.strip().startswith("+")
        digits = "".join(c for c in text if c in DIGITS)
        if any(c not in DIGITS + "+-() ./" for c in text):
            return None
        key = ("+" if plus else "") + digits
        return key if digits else None
    elif kind == "currency":
        key = text.strip().upper()
        return key if re.fullmatch(r"[A-Z]{3}", key) else None
    else:  # date
        return parse_date(text)
    return key or None


# --- drawing values ----------------------------------------------------------------------

FIRST = ("Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal",
         "Lena", "Marco", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
         "Wen", "Yara", "Zoe")
LAST = ("Adler", "Brennan", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
        "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
        "Schmidt", "Tanaka", "Ueda", "Varga", "Weber", "Yilmaz", "Zhang")
COMPANY = ("Acme", "Globex", "Initech", "Northwind", "Contoso", "Fabrikam", "Vandelay", "Hooli",
           "Tailspin", "Litware", "Proseware", "Wingtip", "Adatum", "Lucerne", "Margie", "Fourth Coffee",
           "Blue Yonder", "Alpine Ski", "Coho Vineyard", "Wide World")
COMPANY_KIND = ("Trading", "Supplies", "Logistics", "Systems", "Foods", "Industries", "Consulting", "Labs")
COMPANY_SUFFIX = ("Ltd", "GmbH", "Inc.", "LLC", "S.A.", "B.V.", "AG", "Co.")
STREETS = ("Main", "Oak", "Station", "Market", "Church", "Mill", "River", "Park", "Harbour", "King",
           "Linden", "Rose", "Bridge", "High", "Elm")
STREET_KIND = ("Street", "Road", "Avenue", "Lane", "Way", "Strasse", "Boulevard")
CITIES = (("Springfield", "62704"), ("Rotterdam", "3011 AB"), ("Leeds", "LS1 4DT"), ("Munich", "80331"),
          ("Lyon", "69002"), ("Porto", "4000-123"), ("Oslo", "0150"), ("Osaka", "530-0001"),
          ("Austin", "78701"), ("Graz", "8010"), ("Turin", "10121"), ("Gdansk", "80-831"))
PAYMENT_TERMS = ("Net 30", "Net 15", "Net 60", "Due on receipt", "2/10 Net 30", "End of month")
PAYMENT_METHODS = ("Visa", "Mastercard", "Cash", "Debit card", "American Express", "Bank transfer")
EMAIL_DOMAINS = ("example.com", "mail.test", "post.example", "inbox.test")


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def draw_date(rng: np.random.Generator) -> datetime.date:
    return datetime.date(2015, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 16 * 365)))


def draw_person(rng) -> str:
    return f"{pick(rng, FIRST)} {pick(rng, LAST)}"


def draw_company(rng) -> str:
    return f"{pick(rng, COMPANY)} {pick(rng, COMPANY_KIND)} {pick(rng, COMPANY_SUFFIX)}"


def draw_address(rng) -> str:
    city, postcode = pick(rng, CITIES)
    return f"{int(rng.integers(1, 400))} {pick(rng, STREETS)} {pick(rng, STREET_KIND)}, {postcode} {city}"


def draw_id(rng, prefix: str) -> str:
    digits = "".join(pick(rng, DIGITS) for _ in range(int(rng.integers(4, 8))))
    style = int(rng.integers(3))
    if style == 0:
        return f"{prefix}-{digits}"
    if style == 1:
        return f"{prefix}-{int(rng.integers(2018, 2031))}-{digits}"
    return f"{prefix}{digits}"


def draw_phone(rng) -> str:
    digits = "".join(pick(rng, DIGITS) for _ in range(9))
    return f"+{int(rng.integers(1, 90))} {digits[:3]} {digits[3:6]} {digits[6:]}"


def draw_email(rng) -> str:
    return f"{pick(rng, FIRST).lower()}.{pick(rng, LAST).lower()}@{pick(rng, EMAIL_DOMAINS)}"


def draw_amount(rng, currency: str, low: float = 5, high: float = 20_000) -> Decimal:
    scale = 10 ** CURRENCIES[currency][1]
    factor = 100 if currency == "JPY" else 1
    cents = int(np.exp(rng.uniform(np.log(low * factor), np.log(high * factor))) * scale)
    return Decimal(cents) / scale


def canonical_amount(value: Decimal, currency: str) -> str:
    """The target record's form of an amount: plain digits, ``.`` decimal mark."""
    return f"{value:.{CURRENCIES[currency][1]}f}"
