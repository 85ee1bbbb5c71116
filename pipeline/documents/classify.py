"""Classification: the class and type of a document, from its own code, then the manifest, then its content.

The order is the domain's (docs/domain.md, "Classes and types"):

1. `cda_code`: a CDA R2 document's own `ClinicalDocument/code`, when it is a type we know given in that type's code
   system (`CODE_SYSTEM_OIDS`: a LOINC code under the SNOMED OID is not that LOINC code) (confidence 1.0);
2. the manifest's `document_type`: a type code (`manifest_code`, 0.95), or a common name of a type in French or
   English, compared without case, accents or punctuation (`manifest_name`, 0.9);
3. the content (`content`, at most 0.85): the manifest's title, the file name and the text extracted from the
   document, scored with the rules of `pipeline/documents/data/classification_rules.csv`;
4. otherwise class 95 / type "unknown", rule `unclassified`, confidence 0, flagged for review (never dropped).

Both tables are data a domain expert reads and edits: `document_types.csv` lists the types (code, class, names);
`classification_rules.csv` lists the content rules, one per row:
`type_code,class_code,where,pattern,weight,language,note`.

How a content rule matches (also summed up in the rules file's header):

- Folding. The title, the file name and the text (its first `TEXT_LIMIT` characters) are folded: lower case
  (`str.casefold`), accents removed (Unicode NFKD without combining marks; œ -> oe, æ -> ae, ß -> ss; letters of
  other alphabets and rare symbols are dropped), then every run of characters that are neither letters nor digits
  (spaces, hyphens, apostrophes, slashes, underscores, dots, °, «»...) becomes one space.
  "Compte-rendu d'Hospitalisation" reads `compte rendu d hospitalisation`. In a file name a lower-to-upper case
  change also separates words: "CompteRenduOperatoire.pdf" reads `compte rendu operatoire pdf`.
- Patterns are folded the same way for case, accents and apostrophes, and must match whole words: the match
  starts at the beginning of a word and ends at the end of a word ("cro" does not match "micro" nor "crohn"). A
  plain phrase (no regex character among `|()?*+[]{}\\.^$`) also has its hyphens read as spaces. Anything else is
  a Python regular expression over the folded words; the simple forms are enough: `a|b`, `(s)?`, `\\w*` (rest of
  a word), `\\d+` (a number), `( \\w+)?` (an optional word). Write a space where the text has a hyphen or an
  apostrophe.
- `where` is `title`, `filename` or `text`: the rule only looks there. The manifest's `document_type`, when
  it is neither a code nor a known name, is read as a second title.
- Score of a type = sum of the weights of its matching rules; each rule counts once however often it matches.
  The best type wins when its score is at least `MIN_SCORE` and strictly above the runner-up; a tie or a lower
  score gives 95/unknown.
- Confidence = `CONTENT_CEILING` x min(1, best / `STRONG_SCORE`) x (1/2 + 1/2 x (best - runner-up) / best):
  a title naming the type (weight 10) with no rival gives 0.85; a weak or contested decision stays below
  `REVIEW_BELOW` and is flagged for review.

The tables are loaded once (`lru_cache`) and checked on loading: a broken row raises ValueError naming its line.
`classify` itself never raises: whatever it is given, the worst outcome is 95/unknown.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
TABLE = DATA / "document_types.csv"
RULES = DATA / "classification_rules.csv"
UNKNOWN_CLASS, UNKNOWN_TYPE = "95", "unknown"
PLACES = ("title", "filename", "text")

TEXT_LIMIT = 20_000  # characters of extracted text that are read; the rest never changes the decision
MIN_SCORE = 4.0  # below this, the content does not say enough
STRONG_SCORE = 10.0  # a score from which the evidence counts as strong (a title naming the type)
CONTENT_CEILING = 0.85  # content never beats a declared code or name
REVIEW_BELOW = 0.5  # a decision less sure than this is flagged for review

CONFIDENCE = {"cda_code": 1.0, "manifest_code": 0.95, "manifest_name": 0.9}
# The OID a CDA gives its code in, per `code_system` of document_types.csv. A system with no OID here ("local": our
# own codes) is never trusted from a document.
CODE_SYSTEM_OIDS = {"LOINC": "2.16.840.1.113883.6.1", "DMP": "1.2.250.1.213.1.1.4.12"}  # DMP: TRE_A05-TypeDocComplementaire


@dataclass(frozen=True)
class Classification:
    class_code: str
    type_code: str
    rule: str  # which rule decided: cda_code | manifest_code | manifest_name | content | unclassified
    confidence: float

    @property
    def needs_review(self) -> bool:
        return self.type_code == UNKNOWN_TYPE or self.confidence < REVIEW_BELOW


UNCLASSIFIED = Classification(UNKNOWN_CLASS, UNKNOWN_TYPE, "unclassified", 0.0)

# ---------------------------------------------------------------------------------------------
# Folding
# ---------------------------------------------------------------------------------------------

# Letters NFKD does not decompose (casefold already makes ß "ss"), and the marks that join words without a space.
_SPECIAL = {"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
_MARKS = "’‘ʼ´‐‑‒–—―−⁄°«»“”„•·…×±≤≥€£§¶†′″¿¡"  # the common ones; other non-Latin characters are dropped
_APOSTROPHES = "'’ʼ‘`´"
_WORD_BYTES = bytes(c if chr(c).isascii() and chr(c).isalnum() else 32 for c in range(256))  # else a space
_CAMEL = re.compile(r"(?<=[a-zà-ÿ])(?=[A-ZÀ-Þ])")


def _strip_accents(text: str) -> str:
    """Lower case, accents removed; outside ASCII only the Latin letters survive (as their plain letters)."""
    text = text.casefold()
    if text.isascii():
        return text
    for letter, plain in _SPECIAL.items():
        if letter in text:
            text = text.replace(letter, plain)
    # NFKD splits é into e + a combining accent; ASCII drops the accent (and any other non-Latin character).
    text = unicodedata.normalize("NFKD", text)
    for mark in _MARKS:
        if mark in text:
            text = text.replace(mark, " ")
    return text.encode("ascii", "ignore").decode("ascii")


def fold(text: str) -> str:
    """Lower case, no accents, words separated by single spaces (see the module docstring).

    Each step runs in C: a 20,000-character text folds in about a quarter of a millisecond.
    """
    return " ".join(_strip_accents(text).encode("ascii").translate(_WORD_BYTES).decode("ascii").split())


def _fold_filename(name: str) -> str:
    return fold(_CAMEL.sub(" ", name))


def _as_text(value: object, limit: int | None = None) -> str:
    """Any value as text (None -> ""), cut to `limit` characters before any work on it."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: (limit or len(value)) * 4]).decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    return text[:limit] if limit is not None else text


# ---------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Vocabulary:
    by_code: dict[str, str]  # type code -> class code
    by_upper_code: dict[str, str]  # type code in upper case -> type code
    by_name: dict[str, str]  # folded name -> type code
    by_system: dict[str, str]  # type code -> OID of its code system ("" when it has none)


class _Table:
    """A CSV file without its comment lines (starting with #) and blank lines; rows keep their line numbers."""

    def __init__(self, path: Path) -> None:
        with path.open(encoding="utf-8", newline="") as handle:
            kept = [(n, line) for n, line in enumerate(handle, 1) if line.strip() and not line.lstrip().startswith("#")]
        self.name = path.name
        self._numbers = [n for n, _ in kept]
        self._reader = csv.DictReader(io.StringIO("".join(line for _, line in kept), newline=""))

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        for row in self._reader:
            line = self._numbers[self._reader.line_num - 1]
            if None in row:
                raise ValueError(f"{self.name} line {line}: more fields than columns (quote a value that holds a comma)")
            yield line, row


@lru_cache(maxsize=1)
def vocabulary() -> _Vocabulary:
    by_code: dict[str, str] = {}
    by_name: dict[str, str] = {}
    by_system: dict[str, str] = {}
    for line, row in _Table(TABLE):
        code, class_code = (row.get("type_code") or "").strip(), (row.get("class_code") or "").strip()
        if not code or not class_code:
            raise ValueError(f"{TABLE.name} line {line}: type_code and class_code are required")
        if code in by_code:
            raise ValueError(f"{TABLE.name} line {line}: type {code} listed twice")
        by_code[code] = class_code
        by_system[code] = CODE_SYSTEM_OIDS.get((row.get("code_system") or "").strip(), "")
        names = [row.get("label_en") or "", row.get("label_fr") or "", *(row.get("aliases") or "").split("|")]
        for name in filter(None, map(fold, names)):
            if by_name.setdefault(name, code) != code:
                raise ValueError(f"{TABLE.name} line {line}: the name {name!r} already means {by_name[name]}")
    return _Vocabulary(by_code, {code.upper(): code for code in by_code}, by_name, by_system)


_REGEX_CHARS = set("|()?*+[]{}\\.^$")


@dataclass(frozen=True)
class Rule:
    line: int
    type_code: str
    class_code: str
    where: str
    pattern: str  # folded
    weight: float
    language: str
    note: str
    regex: re.Pattern[str]  # the pattern between word boundaries, for search()
    at_word: re.Pattern[str]  # the pattern ending at a word boundary, for match() at the start of a word
    anchors: tuple[tuple[str, bool], ...]  # (literal start, whole word?) per branch; empty: no anchor found

    def matches(self, padded: str, words: frozenset[str]) -> bool:
        """Whether the rule matches the folded text `padded` (" words "), whose set of words is `words`.

        A match starts with one of the anchors (the literal first word, or start of word, of each branch):
        the expression is only tried where they are, which keeps 200 rules over 20,000 characters fast.
        """
        if not self.anchors:
            return self.regex.search(padded) is not None
        for literal, whole in self.anchors:
            if whole and literal not in words:
                continue
            needle = f" {literal} " if whole else f" {literal}"
            at = padded.find(needle)
            while at >= 0:
                if self.at_word.match(padded, at + 1):
                    return True
                at = padded.find(needle, at + 1)
        return False


def _fold_pattern(pattern: str) -> str:
    """Fold a pattern like the text it is matched on, leaving its escapes (\\w, \\d, \\W...) as written."""
    pieces = re.split(r"(\\.)", pattern.strip())
    folded = "".join(piece if piece.startswith("\\") else _strip_accents(piece) for piece in pieces)
    folded = "".join(" " if c in _APOSTROPHES else c for c in folded)
    if not _REGEX_CHARS & set(folded):
        return fold(folded)  # a plain phrase: hyphens and other punctuation read as spaces
    return re.sub(" +", " ", folded)


def _structure(pattern: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Each character from `start` that is neither escaped nor inside a character class, with the
    group depth once it is read (one walk for `_branches` and `_group_end`, so they agree on what a group is)."""
    depth, i, in_class = 0, start, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        else:
            depth += (c == "(") - (c == ")")
            yield i, c, depth
        i += 1


def _branches(pattern: str) -> list[str]:
    """Split on the top-level `|` (not inside a group or a character class)."""
    out, start = [], 0
    for i, c, depth in _structure(pattern):
        if c == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
    out.append(pattern[start:])
    return out


def _group_end(pattern: str, start: int) -> int:
    """Index of the `)` closing the group opened at `start`, or -1."""
    for i, c, depth in _structure(pattern, start):
        if c == ")" and depth == 0:
            return i
    return -1


def _anchors(pattern: str, after: str = "") -> list[tuple[str, bool]] | None:
    """For each branch, the literal start of its first word and whether that is the whole word.

    None when some branch has no literal start (it begins with an optional part, a class, ...): then no cheap
    pre-check is possible. `after` is what follows the pattern when it is a group inside a larger pattern.
    """
    anchors: list[tuple[str, bool]] = []
    for branch in _branches(pattern):
        if branch.startswith("("):
            end = _group_end(branch, 0)
            if end < 0 or branch[end + 1 : end + 2] in ("?", "*", "{"):
                return None
            inner = branch[1:end]
            inner = inner[2:] if inner.startswith("?:") else inner
            found = _anchors(inner, branch[end + 1 :] + after)
            if found is None:
                return None
            anchors.extend(found)
            continue
        literal = []
        rest = branch + after
        for i, c in enumerate(rest):
            if c == " ":
                whole = rest[i + 1 : i + 2] not in ("?", "*", "{")  # "pre ?operative": the space is optional
                break
            if c.isalnum():
                literal.append(c)
                continue
            whole = False
            if c in "?*{" and literal:
                literal.pop()
            break
        else:
            whole = True
        if not literal:
            return None
        anchors.append(("".join(literal), whole))
    return anchors


@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    """The content rules, checked: known type with its class, known place, positive weight, valid pattern."""
    vocab = vocabulary()
    out: list[Rule] = []
    for line, row in _Table(RULES):
        where = (row.get("where") or "").strip()
        type_code = (row.get("type_code") or "").strip()
        class_code = (row.get("class_code") or "").strip()
        if vocab.by_code.get(type_code) != class_code:
            raise ValueError(f"{RULES.name} line {line}: type {type_code!r} with class {class_code!r} is not in {TABLE.name}")
        if where not in PLACES:
            raise ValueError(f"{RULES.name} line {line}: where must be one of {', '.join(PLACES)}, not {where!r}")
        try:
            weight = float(row.get("weight") or "")
        except ValueError:
            raise ValueError(f"{RULES.name} line {line}: weight {row.get('weight')!r} is not a number") from None
        if not 0 < weight <= 100:
            raise ValueError(f"{RULES.name} line {line}: weight must be above 0 (and at most 100)")
        pattern = _fold_pattern(row.get("pattern") or "")
        try:
            regex, at_word = re.compile(rf"(?<= )(?:{pattern})(?= )"), re.compile(rf"(?:{pattern})(?= )")
        except re.error as error:
            raise ValueError(f"{RULES.name} line {line}: pattern {pattern!r} is not a valid expression: {error}") from None
        if not pattern or regex.search("  "):
            raise ValueError(f"{RULES.name} line {line}: pattern {pattern!r} matches empty text")
        anchors = _anchors(pattern) or []
        out.append(
            Rule(
                line=line,
                type_code=type_code,
                class_code=class_code,
                where=where,
                pattern=pattern,
                weight=weight,
                language=(row.get("language") or "").strip(),
                note=(row.get("note") or "").strip(),
                regex=regex,
                at_word=at_word,
                anchors=tuple(dict.fromkeys(anchors)),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Deciding
# ---------------------------------------------------------------------------------------------


def _manifest_decision(document_type: object) -> Classification | None:
    vocab = vocabulary()
    declared = _as_text(document_type, 1000).strip()
    if not declared:
        return None
    code = vocab.by_upper_code.get(declared.upper())
    if code is not None:
        return Classification(vocab.by_code[code], code, "manifest_code", CONFIDENCE["manifest_code"])
    code = vocab.by_name.get(fold(declared))
    if code is not None:
        return Classification(vocab.by_code[code], code, "manifest_name", CONFIDENCE["manifest_name"])
    return None


@dataclass(frozen=True)
class _Place:
    padded: str  # " folded words "
    words: frozenset[str]


def _place(texts: Iterable[str]) -> _Place:
    folded = " ".join(t for t in texts if t)
    return _Place(f" {folded} ", frozenset(folded.split()))


def _places(title: object, filename: object, text: object, declared: object) -> dict[str, list[_Place]]:
    return {
        # The title and an unrecognized document_type are read apart, so no phrase straddles the two.
        "title": [_place([fold(_as_text(title, 2000))]), _place([fold(_as_text(declared, 1000))])],
        "filename": [_place([_fold_filename(_as_text(filename, 2000))])],
        "text": [_place([fold(_as_text(text, TEXT_LIMIT))])],
    }


def matching_rules(title: object, filename: object = None, text: object = None, document_type: object = None) -> list[Rule]:
    """The content rules that match (each once): what `classify` sums up, for explaining a decision."""
    places = _places(title, filename, text, document_type)
    return [rule for rule in rules() if any(rule.matches(p.padded, p.words) for p in places[rule.where] if p.words)]


def content_scores(title: object, filename: object = None, text: object = None, document_type: object = None) -> dict[str, float]:
    """Score per type from the content rules, best first."""
    scores: dict[str, float] = {}
    for rule in matching_rules(title, filename, text, document_type):
        scores[rule.type_code] = scores.get(rule.type_code, 0.0) + rule.weight
    return dict(sorted(scores.items(), key=lambda item: (-item[1], item[0])))


def _content_decision(title: object, filename: object, text: object, declared: object) -> Classification:
    ranked = list(content_scores(title, filename, text, declared).items())
    if not ranked:
        return UNCLASSIFIED
    best_type, best = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if best < MIN_SCORE or best - runner_up < 1e-9:
        return UNCLASSIFIED
    confidence = CONTENT_CEILING * min(1.0, best / STRONG_SCORE) * (0.5 + 0.5 * (best - runner_up) / best)
    return Classification(vocabulary().by_code[best_type], best_type, "content", round(confidence, 3))


def classify(
    cda_code: str | None,
    document_type: str | None,
    title: str | None,
    filename: str | None = None,
    text: str | None = None,
    cda_code_system: str | None = None,
) -> Classification:
    """Decide class and type. Never fails: the unclassifiable is 95 / unknown, flagged for review.

    `cda_code` counts only with the OID of its code system (`cda_code_system`) matching the type's.
    """
    vocab = vocabulary()
    rules()  # a broken rules table fails here, loudly, not as a pile of unknown documents
    try:
        own = _as_text(cda_code, 100).strip()
        system = _as_text(cda_code_system, 100).strip()
        if own in vocab.by_code and vocab.by_system[own] and system == vocab.by_system[own]:
            return Classification(vocab.by_code[own], own, "cda_code", CONFIDENCE["cda_code"])
        declared = _manifest_decision(document_type)
        if declared is not None:
            return declared
        return _content_decision(title, filename, text, document_type)
    except Exception:  # never lose a document to a classification bug: keep it, flagged for review
        log.exception("classification failed; the document is kept as 95/unknown")
        return UNCLASSIFIED


def needs_content(document_type: str | None) -> bool:
    """True when the manifest's document_type alone does not decide (the caller must then extract the text).

    A CDA document whose own code is a known type does not need its text either; this only looks at the manifest.
    """
    try:
        return _manifest_decision(document_type) is None
    except Exception:
        log.exception("reading document_type failed")
        return True
