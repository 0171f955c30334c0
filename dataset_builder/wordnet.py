"""A dependency-free reader of the WordNet 3.0 noun database (Debian `wordnet-base`), ImageNet-style wnids."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
_WNID = re.compile(r"^n\d{8}$")
_SEPARATORS = re.compile(r"[\s_\-]+")
# The first quote that opens an example follows the start, a ';' or a ':'; quotes inside a definition do not.
_EXAMPLES_START = re.compile(r'(?:^|[;:])\s*"')
_QUOTED = re.compile(r'"([^"]*)"')
# WordNet's morphy detachment rules for nouns (inflected suffix -> base suffix).
_NOUN_SUFFIXES = (
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)
_HYPERNYM_POINTER = re.compile(r" @i? (\d{8}) n \d{4}")
_CACHE: dict[Path, "WordNet"] = {}


@dataclass(frozen=True)
class Synset:
    """One noun synset: wnid ("n" + 8-digit offset), lemmas, definition, examples and hypernym wnids."""

    wnid: str
    lemmas: tuple[str, ...]
    gloss: str
    examples: tuple[str, ...]
    hypernyms: tuple[str, ...]

    @property
    def name(self) -> str:
        """The first (headword) lemma."""
        return self.lemmas[0]


def normalize_lemma(name: str) -> str:
    """Lower-case, with runs of spaces, underscores and hyphens collapsed to one space."""
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


def split_gloss(raw: str) -> tuple[str, tuple[str, ...]]:
    """(definition, examples) of a raw WordNet gloss such as 'a fish; "they caught a tench"'."""
    raw = raw.strip()
    match = _EXAMPLES_START.search(raw) if '"' in raw else None
    if match is None:
        return raw.rstrip(";").strip(), ()
    definition = raw[: match.start()].rstrip(" ;:")
    examples = tuple(example.strip() for example in _QUOTED.findall(raw, match.start()) if example.strip())
    return definition, examples


def _parse_data_line(line: str) -> Synset:
    head, _, raw_gloss = line.partition(" | ")
    fields = head.split()
    word_count = int(fields[3], 16)
    lemmas = tuple(word.replace("_", " ") for word in fields[4 : 4 + 2 * word_count : 2])
    pointer_at = 4 + 2 * word_count
    pointer_count = int(fields[pointer_at])
    hypernyms = []
    for i in range(pointer_at + 1, pointer_at + 1 + 4 * pointer_count, 4):
        if fields[i] in ("@", "@i") and fields[i + 2] == "n":
            hypernyms.append("n" + fields[i + 1])
    gloss, examples = split_gloss(raw_gloss)
    return Synset("n" + fields[0], lemmas, gloss, examples, tuple(hypernyms))


class WordNet:
    """The WordNet 3.0 noun hierarchy: synsets by wnid, lemma lookup, hypernym/hyponym closures."""

    def __init__(
        self,
        lines: dict[str, str],
        hypernyms: dict[str, tuple[str, ...]],
        senses: dict[str, tuple[str, ...]],
        exceptions: dict[str, tuple[str, ...]],
    ):
        # Synsets are parsed from their data line on first access: the full parse of 82k lines costs ~1.5 s.
        self._lines = lines
        self._hypernyms = hypernyms
        self._synsets: dict[str, Synset] = {}
        self._senses = senses
        self._exceptions = exceptions
        children: dict[str, list[str]] = {}
        for wnid, parents in hypernyms.items():
            for parent in parents:
                children.setdefault(parent, []).append(wnid)
        self._children = {wnid: tuple(kids) for wnid, kids in children.items()}

    @classmethod
    def load(cls, root: Path | str = WORDNET_DIR) -> "WordNet":
        """Read (once per process, then cached) data.noun, index.noun and noun.exc under `root`."""
        root = Path(root).resolve()
        if root not in _CACHE:
            _CACHE[root] = cls._read(root)
        return _CACHE[root]

    @classmethod
    def _read(cls, root: Path) -> "WordNet":
        data_path, index_path, exc_path = root / "data.noun", root / "index.noun", root / "noun.exc"
        for path in (data_path, index_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: install WordNet 3.0 with `apt-get install wordnet-base wordnet-sense-index`"
                )
        lines, hypernyms = {}, {}
        with open(data_path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # license header lines start with two spaces
                    continue
                wnid = "n" + line[:8]
                lines[wnid] = line
                hypernyms[wnid] = tuple("n" + offset for offset in _HYPERNYM_POINTER.findall(line))
        senses: dict[str, tuple[str, ...]] = {}
        with open(index_path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split()
                # index.noun lemmas are lower-case without spaces: a cheap replace equals normalize_lemma here.
                key = fields[0].replace("_", " ").replace("-", " ")
                if "  " in key:
                    key = normalize_lemma(key)
                wnids = tuple("n" + offset for offset in fields[-int(fields[2]) :])
                # 't-shirt' and 't_shirt' style variants collapse to one key: keep both sense lists, in order.
                senses[key] = tuple(dict.fromkeys(senses[key] + wnids)) if key in senses else wnids
        exceptions: dict[str, tuple[str, ...]] = {}
        if exc_path.is_file():
            with open(exc_path, encoding="utf-8") as f:
                for line in f:
                    inflected, *bases = line.split()
                    exceptions[normalize_lemma(inflected)] = tuple(normalize_lemma(base) for base in bases)
        return cls(lines, hypernyms, senses, exceptions)

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._lines

    def __iter__(self) -> Iterator[Synset]:
        return (self.synset(wnid) for wnid in self._lines)

    def synset(self, wnid: str) -> Synset:
        """The synset of an ImageNet-style noun wnid such as 'n01440764'."""
        synset = self._synsets.get(wnid)
        if synset is None:
            if wnid not in self._lines:
                hint = "" if _WNID.match(str(wnid)) else " (expected 'n' + 8 digits, e.g. 'n01440764')"
                raise KeyError(f"{wnid!r} is not a WordNet 3.0 noun synset{hint}")
            synset = self._synsets[wnid] = _parse_data_line(self._lines[wnid])
        return synset

    def _base_forms(self, key: str) -> list[str]:
        # Morphy on the last word only: 'ankle boots' -> 'ankle boot', 'trousers' -> 'trouser'.
        head, _, last = key.rpartition(" ")
        prefix = head + " " if head else ""
        bases = list(self._exceptions.get(last, ()))
        bases += [
            last[: -len(suffix)] + base
            for suffix, base in _NOUN_SUFFIXES
            if last.endswith(suffix) and len(last) > len(suffix)
        ]
        return [prefix + base for base in dict.fromkeys(bases)]

    def lookup(self, name: str) -> list[Synset]:
        """Noun synsets of a lemma (case, spaces, '_' and '-' ignored), most frequent sense first; [] if unknown.

        Falls back to WordNet's morphological base forms (plural -> singular) when the exact lemma is unknown.
        """
        key = normalize_lemma(name)
        wnids = self._senses.get(key, ())
        if not wnids:
            wnids = tuple(dict.fromkeys(w for base in self._base_forms(key) for w in self._senses.get(base, ())))
        return [self.synset(wnid) for wnid in wnids]

    def hypernyms_at(self, wnid: str, depth: int) -> set[str]:
        """The ancestors exactly `depth` hypernym steps up (a root reached earlier stands in for its branch)."""
        level = {self.synset(wnid).wnid}
        for _ in range(depth):
            parents = set()
            for node in level:
                parents.update(self._hypernyms[node] or (node,))
            if parents == level:
                break
            level = parents
        return level

    def ancestors(self, wnid: str) -> set[str]:
        """All hypernyms (including instance hypernyms) of `wnid`, transitively, up to 'entity'."""
        seen: set[str] = set()
        stack = list(self._hypernyms[self.synset(wnid).wnid])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self._hypernyms[node])
        return seen

    def hyponym_closure(self, wnid: str) -> set[str]:
        """All descendants (hyponyms and instances, transitively) of `wnid`, not including itself."""
        seen: set[str] = set()
        stack = list(self._children.get(self.synset(wnid).wnid, ()))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self._children.get(node, ()))
        return seen


__all__ = ["Synset", "WordNet", "WORDNET_DIR", "normalize_lemma", "split_gloss"]
