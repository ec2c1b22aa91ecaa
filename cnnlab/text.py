"""User-supplied text made safe to show: cut short (`clipped`) and escaped for a terminal (`printable`);
counts with their noun (`counted`).

The bottom layer, beside errors.py: spec and config errors quote what the user typed, training
prints the folder they chose, the CLI prints file and class names; all go through here.
"""

from __future__ import annotations

import unicodedata

SHOWN_CHARS = 40  # of a user's value or spec line quoted in an error (a spec may be megabytes)
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object, keep: str = "") -> str:
    """Text safe for a terminal: control characters (and bidi controls) as escapes, e.g. '\\x1b'.

    User-supplied names (files, class folders, runs) reach the terminal only through this, so a
    name cannot move the cursor, change colours or retitle the window. `keep` lists control
    characters left alone (main() keeps newlines in multi-line error messages).
    """
    return "".join(
        _escape(ch) if ch not in keep and (unicodedata.category(ch) == "Cc" or ch in _BIDI) else ch
        for ch in str(text)
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clipped(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there are."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more)"


def counted(count: int, noun: str) -> str:
    """'1 epoch', '4 epochs': an English count with its noun, plural unless the count is 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# Korean particles that depend on the word before them: a translation writes both forms, e.g.
# "{size}을(를)", and korean_particles picks one once the word is known ("3x3을", "커널을").
PARTICLES = {
    "을(를)": ("을", "를"),
    "이(가)": ("이", "가"),
    "은(는)": ("은", "는"),
    "과(와)": ("과", "와"),
    "와(과)": ("과", "와"),
    "(으)로": ("으로", "로"),
    "(이)라고": ("이라고", "라고"),
    "(이)라는": ("이라는", "라는"),
}
_HANGUL_FIRST, _HANGUL_LAST, _RIEUL = 0xAC00, 0xD7A3, 8  # syllables; ㄹ's index among finals
# The final consonant of a digit as read in Sino-Korean (영 일 이 삼 사 오 육 칠 팔 구): 0 none,
# 8 ㄹ, other a consonant. A number ending in 0 reads 영, 십, 백, 천 or 만: all with one.
_DIGIT_FINAL = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
# English letters: a final l reads ㄹ; m, n, k, p, t, b, d, g a consonant; vowels and r, s, x none.
_LETTER_FINAL = {"l": 8, **dict.fromkeys("mnkptbdg", 1)}
_CLOSING = {")": "(", "]": "[", "}": "{"}


def final_consonant(word: str) -> int:
    """0 when `word` is read ending in a vowel, 8 in ㄹ, another number in another consonant."""
    end = len(word)
    while end:
        ch = word[end - 1]
        if ch in _CLOSING:  # a parenthesis: the particle goes with the word before it
            opening = word.rfind(_CLOSING[ch], 0, end - 1)
            end = opening if opening > 0 else end - 1
        elif ch in "'\"` ":
            end -= 1
        else:
            break
    if not end:
        return 0
    ch = word[end - 1]
    if _HANGUL_FIRST <= ord(ch) <= _HANGUL_LAST:
        return (ord(ch) - _HANGUL_FIRST) % 28
    return _DIGIT_FINAL.get(ch, _LETTER_FINAL.get(ch.lower(), 0))


def korean_particles(text: str) -> str:
    """Each '을(를)', '이(가)', '(으)로', ... of `text` as the word before it asks ('3x3을')."""
    for marker, (after_consonant, after_vowel) in PARTICLES.items():
        while marker in text:
            at = text.index(marker)
            final = final_consonant(text[:at])
            consonant = final != 0 and not (marker == "(으)로" and final == _RIEUL)
            particle = after_consonant if consonant else after_vowel
            text = text[:at] + particle + text[at + len(marker) :]
    return text


def columns(text: str) -> int:
    """How many terminal columns `text` takes: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def padded(text: str, width: int, right: bool = False) -> str:
    """`text` padded with spaces to `width` terminal columns (f"{text:<width}" for wide letters too)."""
    fill = " " * max(0, width - columns(text))
    return fill + text if right else text + fill
