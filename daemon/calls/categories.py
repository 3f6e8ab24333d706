"""The 110 service's call categories: what each means, how urgent it is, and whether it sends a unit.

Polri's 110 line takes three kinds of call (layanan informasi, pelaporan, pengaduan); a radio's
emergency button is a fourth, above them all. A category is written `group/kind`
(`pelaporan/kecelakaan`), or the group or the kind alone (`informasi`, `kecelakaan`), in any
case, with `/`, `.`, `-`, `_` or a space between. An unknown category is never refused: the call
keeps it as given, is flagged `unknown_category`, and is treated like a report that needs a unit
(the safer guess), at the middle priority.

Priority 0 is the most urgent (a radio's emergency); 1 to 5 order the calls people make. The
queue of a dispatcher's console and the offers of a freed unit follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMERGENCY = "darurat/tombol"  # a radio's emergency button (not a category callers give)
UNKNOWN_PRIORITY = 3


@dataclass(frozen=True, slots=True)
class Category:
    code: str  # group/kind, e.g. pelaporan/kecelakaan
    label: str  # Indonesian, as the console shows it
    priority: int  # 0 most urgent .. 5
    dispatch: bool  # whether answering it sends a unit


CATEGORIES: tuple[Category, ...] = (
    Category(EMERGENCY, "Darurat: tombol darurat radio", 0, True),
    Category("pengaduan/kekerasan", "Pengaduan: kekerasan", 1, True),
    Category("pelaporan/kerusuhan", "Pelaporan: kerusuhan", 1, True),
    Category("pelaporan/kejahatan", "Pelaporan: kejahatan sedang terjadi", 1, True),
    Category("pelaporan/kecelakaan", "Pelaporan: kecelakaan", 2, True),
    Category("pelaporan/bencana", "Pelaporan: bencana", 2, True),
    Category("pelaporan/kebakaran", "Pelaporan: kebakaran", 2, True),
    Category("pengaduan/ancaman", "Pengaduan: ancaman", 2, True),
    Category("pelaporan/pencurian", "Pelaporan: pencurian", 3, True),
    Category("pelaporan/orang-hilang", "Pelaporan: orang hilang", 3, True),
    Category("pelaporan/lainnya", "Pelaporan: lainnya", 3, True),
    Category("pengaduan/penghinaan", "Pengaduan: penghinaan", 4, False),
    Category("pengaduan/lainnya", "Pengaduan: lainnya", 4, False),
    Category("informasi/umum", "Layanan informasi", 5, False),
)
_BY_CODE = {c.code: c for c in CATEGORIES}
_GROUP_DEFAULT = {"informasi": "informasi/umum", "pelaporan": "pelaporan/lainnya", "pengaduan": "pengaduan/lainnya", "darurat": EMERGENCY}
_BY_KIND = {c.code.split("/", 1)[1]: c for c in CATEGORIES}
_SEPARATORS = re.compile(r"[\s/._-]+")


@dataclass(frozen=True, slots=True)
class Classified:
    """What a call's category means here: the known category, or None (then the defaults for an unknown one)."""

    category: Category | None

    @property
    def code(self) -> str | None:
        return None if self.category is None else self.category.code

    @property
    def priority(self) -> int:
        return UNKNOWN_PRIORITY if self.category is None else self.category.priority

    @property
    def dispatch(self) -> bool:
        return True if self.category is None else self.category.dispatch

    @property
    def label(self) -> str:
        return "" if self.category is None else self.category.label


def classify(text: str) -> Classified:
    """The category a caller's or gateway's `category` text names, if any."""
    words = [w for w in _SEPARATORS.split(text.strip().lower()) if w]
    if not words:
        return Classified(None)
    group, kind = words[0], "-".join(words[1:])
    if kind:
        found = _BY_CODE.get(f"{group}/{kind}")
        if found is not None:
            return Classified(found)
        return Classified(_BY_KIND.get("-".join(words)) if group not in _GROUP_DEFAULT else None)
    if group in _GROUP_DEFAULT:
        return Classified(_BY_CODE[_GROUP_DEFAULT[group]])
    return Classified(_BY_KIND.get(group))
