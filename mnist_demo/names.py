"""Names people can tell apart: confusable skeletons, invisible characters, role words.

Two nicknames are the same to the class when they *look* the same, not when their code
points are equal: "Аda" with a Cyrillic А is "Ada" on the leaderboard. Unicode's answer
is the confusable skeleton of UTS #39 (Unicode Security Mechanisms): map every character
to the prototype it can be mistaken for (Cyrillic а → a, 0 → O, rn → m, …) and compare
the results. The mapping is Unicode's own confusables.txt, as shipped and maintained by
the `confusable-homoglyphs` package (pure Python; PyICU's SpoofChecker computes the same
skeleton but needs ICU and a compiler to install).

`confusable-homoglyphs` keeps confusables.txt as groups: each prototype listed with the
characters that map to it, and each of those listing its prototype. `_prototypes` turns
that back into the function UTS #39 applies: character → prototype.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

# Characters that draw nothing (or look like a space) yet count as letters or format
# characters: a name made of them is blank on the screen, and one holding them looks
# like another name. Beyond these, every format character (Unicode category Cf: zero-
# width spaces and joiners, direction marks, tags) is refused.
BLANK_LOOKING = {
    "\u115f": "HANGUL CHOSEONG FILLER",
    "\u1160": "HANGUL JUNGSEONG FILLER",
    "\u3164": "HANGUL FILLER",
    "\uffa0": "HALFWIDTH HANGUL FILLER",
    "\u2800": "BRAILLE PATTERN BLANK",
    "\u034f": "COMBINING GRAPHEME JOINER",
    "\u17b4": "KHMER VOWEL INHERENT AQ",
    "\u17b5": "KHMER VOWEL INHERENT AA",
    "\u180e": "MONGOLIAN VOWEL SEPARATOR",
}

# Words that claim a role in the class. A nickname whose skeleton holds one of these as a
# word (or, for the long ones, anywhere) is refused: "#1 Instructor" in the queue, or
# "Teacher" on the leaderboard, would mislead the room.
ROLE_WORDS = (
    "instructor",
    "teacher",
    "professor",
    "lecturer",
    "moderator",
    "administrator",
    "admin",
    "staff",
    "tutor",
    "teaching assistant",
    "ta",
    "prof",
    "mod",
    "sysadmin",
    "root",
    "system",
    "server",
    "digit lab",
)
_ANYWHERE = 7  # role words this long are refused inside another word too ("MrTeacher")


@functools.cache
def _prototypes() -> dict[str, str]:
    """Character → its UTS #39 prototype, from confusable-homoglyphs' groups. In a group
    the prototype is the entry listing the most others (its sources each list only it);
    for a pair listing only each other, the smaller code point stands for both."""
    data = confusables.confusables_data
    clean = {_strip_marks(k): [_strip_marks(h["c"]) for h in v] for k, v in data.items()}
    mapping: dict[str, str] = {}
    for char, listed in clean.items():
        if len(listed) != 1:
            continue  # a prototype (it lists its sources)
        target = listed[0]
        if len(clean.get(target, ())) == 1 and clean[target][0] == char:
            target = min(char, target)  # a pair: one of the two for both
        if target != char:
            mapping[char] = target
    return mapping


def _strip_marks(text: str) -> str:
    """confusable-homoglyphs wraps right-to-left characters in LEFT-TO-RIGHT MARKs."""
    return text.replace("\u200e", "")


def skeleton(text: str) -> str:
    """The UTS #39 skeleton: NFD, each character mapped to its prototype, NFD again."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(c, c) for c in decomposed)
    return unicodedata.normalize("NFD", mapped)


def look(text: str) -> set[str]:
    """How a name can look: its skeleton as written and case-folded ("Ian" and "lan" are
    one skeleton as written; "ADA" and "ada" after folding). Two names that share one
    are names people cannot tell apart."""
    return {skeleton(text), skeleton(text.casefold()), skeleton(skeleton(text).casefold())}


def confusable_with(name: str, others: Iterable[str | None]) -> str | None:
    """The first of `others` people could mistake `name` for, else None."""
    mine = look(name)
    for other in others:
        if other and look(other) & mine:
            return other
    return None


def invisible_characters(text: str) -> list[str]:
    """Names of the characters in `text` that draw nothing or format text invisibly."""
    found = []
    for c in dict.fromkeys(text):
        if c in BLANK_LOOKING:
            found.append(BLANK_LOOKING[c])
        elif unicodedata.category(c) in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp") or (
            c.isspace() and c != " "
        ):
            found.append(unicodedata.name(c, f"U+{ord(c):04X}"))
    return found


def claimed_role(text: str) -> str | None:
    """The role word a name reads as (in any look-alike spelling, any case), else None:
    one of its words looks like a role word, or, for the long ones, the name without its
    spaces holds one ("MrTeacher")."""
    words = [w for w in re.split(r"[\s_\-]+", text) if w]
    variants = {v for w in words for v in (w, w.strip("0123456789")) if v}
    word_looks = set().union(*(look(w) for w in variants)) if variants else set()
    spaced = look(" ".join(words))
    joined = look("".join(words))
    for role in ROLE_WORDS:
        role_looks = look(role) | look(role.title()) | look(role.upper())
        if " " in role:
            if any(r in s for r in role_looks for s in spaced) or any(
                r.replace(" ", "") in j for r in role_looks for j in joined
            ):
                return role
        elif role_looks & word_looks or (
            len(role) >= _ANYWHERE and any(r in j for r in role_looks for j in joined)
        ):
            return role
    return None
