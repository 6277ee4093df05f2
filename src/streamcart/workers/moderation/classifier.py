"""The moderation verdict on a text: word list, links and a trained model, combined.

Pure (no Redis, no service) so it can be tested and tuned on its own. The
word list names the exact words it found; the naive Bayes model, trained on
the labelled examples shipped in ``data/``, catches what the list does not
(insults and spam it has never seen spelled that way) and gives the scores;
links are refused while the policy says so. Any one reason refuses the text.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from collections.abc import Iterable, Mapping

import msgspec

from streamcart.workers.moderation.bayes import NaiveBayes
from streamcart.workers.moderation.links import find_links, without_links
from streamcart.workers.moderation.text import features, ngrams, spellings

ABUSE, SPAM, CLEAN = "abuse", "spam", "clean"
_DATA = importlib.resources.files("streamcart.workers.moderation") / "data"
# Laplace smoothing, chosen by 5-fold cross-validation on the shipped examples.
_ALPHA = 0.5


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """When a text is refused: model scores at or above a threshold, or any link."""

    abuse_threshold: float = 0.8
    spam_threshold: float = 0.8
    block_links: bool = True

    def __post_init__(self) -> None:
        for name in ("abuse_threshold", "spam_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be above 0 and at most 1, got {value}")


class Scores(msgspec.Struct, frozen=True):
    """The model's probabilities that the text is abuse, or spam."""

    abuse: float
    spam: float


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a text may be shown, and every reason it may not."""

    allowed: bool
    reasons: list[str]
    scores: Scores


class Lexicon:
    """Listed words and phrases per category, found as whole words in any spelling."""

    def __init__(self, terms: Mapping[str, Iterable[str]]) -> None:
        self.terms = {category: list(listed) for category, listed in terms.items()}
        # Each spelling of a term -> (its category, the term as listed).
        self._index: dict[str, tuple[str, str]] = {}
        for category, listed in self.terms.items():
            for term in listed:
                for spelling in spellings(term):
                    self._index[" ".join(spelling)] = (category, term)
        self._lengths = sorted({key.count(" ") + 1 for key in self._index})

    def matches(self, text: str) -> list[tuple[str, str]]:
        """The (category, term) of every listed term found in ``text``, each once."""
        found: dict[tuple[str, str], None] = {}
        for words in spellings(text):
            for n in self._lengths:
                for gram in ngrams(words, n):
                    if gram in self._index:
                        found[self._index[gram]] = None
        return list(found)


class Classifier:
    """Judges texts with a word list and a model of the abuse, spam and clean classes."""

    def __init__(self, model: NaiveBayes, lexicon: Lexicon) -> None:
        self.model = model
        self.lexicon = lexicon

    def check(self, text: str, policy: Policy | None = None) -> Verdict:
        """The verdict on ``text`` under ``policy`` (the defaults when None)."""
        policy = policy or Policy()
        found = self.lexicon.matches(text)
        reasons = [f"{category}: contains {term!r}" for category, term in found]
        probabilities = self.model.probabilities(text)
        scores = Scores(
            abuse=round(probabilities.get(ABUSE, 0.0), 3),
            spam=round(probabilities.get(SPAM, 0.0), 3),
        )
        if scores.abuse >= policy.abuse_threshold:
            reasons.append(f"abuse: model score {scores.abuse:.2f}")
        if scores.spam >= policy.spam_threshold:
            reasons.append(f"spam: model score {scores.spam:.2f}")
        if policy.block_links:
            reasons += [f"link: {link}" for link in dict.fromkeys(find_links(text))]
        return Verdict(allowed=not reasons, reasons=reasons, scores=scores)


def load_examples() -> list[tuple[str, str]]:
    """The shipped training data: (label, text) pairs."""
    rows = csv.DictReader((_DATA / "examples.csv").read_text(encoding="utf-8").splitlines())
    return [(row["label"], row["text"]) for row in rows]


def load_lexicon() -> Lexicon:
    """The shipped word list."""
    terms = msgspec.json.decode((_DATA / "lexicon.json").read_bytes(), type=dict[str, list[str]])
    return Lexicon(terms)


def _model_features(text: str) -> list[str]:
    """Word unigrams and bigrams, links left out: links have a rule of their own,
    which the policy can turn off, so the model must not refuse them as spam."""
    return features(without_links(text))


def train(examples: Iterable[tuple[str, str]], lexicon: Lexicon) -> NaiveBayes:
    """A model of (label, text) examples.

    Every listed term is one more example of its category, so the model knows
    the listed words even where no example sentence uses them.
    """
    listed = [(category, term) for category, terms in lexicon.terms.items() for term in terms]
    return NaiveBayes.train([*examples, *listed], _model_features, alpha=_ALPHA)


@functools.cache
def default_classifier() -> Classifier:
    """The classifier of the shipped data, trained on first use and then shared
    by the process: training takes milliseconds, but not on every message."""
    lexicon = load_lexicon()
    return Classifier(train(load_examples(), lexicon), lexicon)
