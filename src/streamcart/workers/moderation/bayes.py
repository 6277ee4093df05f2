"""A multinomial naive Bayes text model, in pure Python.

Small on purpose: a few hundred labelled examples train it in milliseconds,
and it needs no numerical library. Features the training data never showed
are ignored rather than smoothed: with Laplace smoothing alone, an unseen
word would favour whichever class saw the fewest words, so a clean text full
of new words could read as spam.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

Featurizer = Callable[[str], list[str]]


class NaiveBayes:
    """Class probabilities of a text, from its feature counts."""

    def __init__(
        self,
        log_priors: Mapping[str, float],
        log_likelihoods: Mapping[str, Mapping[str, float]],
        featurize: Featurizer,
    ) -> None:
        self._log_priors = dict(log_priors)
        self._log_likelihoods = {label: dict(table) for label, table in log_likelihoods.items()}
        self._featurize = featurize
        self._vocabulary = set().union(*self._log_likelihoods.values())

    @classmethod
    def train(
        cls, examples: Iterable[tuple[str, str]], featurize: Featurizer, *, alpha: float = 1.0
    ) -> NaiveBayes:
        """A model of ``(label, text)`` examples, with Laplace smoothing ``alpha``.

        Raises:
            ValueError: no examples.
        """
        documents: Counter[str] = Counter()
        counts: dict[str, Counter[str]] = {}
        for label, text in examples:
            documents[label] += 1
            counts.setdefault(label, Counter()).update(featurize(text))
        if not documents:
            raise ValueError("naive Bayes needs at least one training example")
        vocabulary = set().union(*counts.values())
        total = sum(documents.values())
        log_priors = {label: math.log(n / total) for label, n in documents.items()}
        log_likelihoods = {}
        for label, seen in counts.items():
            denominator = math.log(sum(seen.values()) + alpha * len(vocabulary))
            log_likelihoods[label] = {
                feature: math.log(seen[feature] + alpha) - denominator for feature in vocabulary
            }
        return cls(log_priors, log_likelihoods, featurize)

    def probabilities(self, text: str) -> dict[str, float]:
        """P(label | text) for every label; the priors when no feature is known."""
        scores = dict(self._log_priors)
        for feature in self._featurize(text):
            if feature in self._vocabulary:
                for label, table in self._log_likelihoods.items():
                    scores[label] += table[feature]
        top = max(scores.values())
        exps = {label: math.exp(score - top) for label, score in scores.items()}
        total = sum(exps.values())
        return {label: value / total for label, value in exps.items()}
