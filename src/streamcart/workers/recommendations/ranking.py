"""Recall and ranking: from what the graphs hold around a user to a ranked list.

Pure functions over plain data, so the rules can be tested without Redis.
Each source of candidates is a :class:`Signal` (a reason, a weight and the
skus it suggests with their raw strengths). A signal is scaled to its own
strongest entry before its weight applies, so the weights decide the blend
and not the raw volumes: one best-seller sold 10,000 times does not drown the
three items bought together with what the user bought.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import msgspec

PERSONAL, POPULAR = "personal", "popular"
# (sku, raw strength): a co-purchase count, a view count, units sold...
Scored = Sequence[tuple[str, float]]


class Weights(msgspec.Struct, frozen=True, kw_only=True):
    """What each source adds at most (for its strongest candidate); the values
    are the service's live settings."""

    bought_with: float
    viewed_with: float
    category: float
    popular: float
    popular_viewed: float


class Signal(msgspec.Struct, frozen=True):
    """One source of candidates; ``personal`` when it comes from the user's history."""

    reason: str
    weight: float
    scored: Scored
    personal: bool = True


class Neighbourhood(msgspec.Struct, frozen=True, kw_only=True):
    """What the graphs hold around some seed skus."""

    bought_with: Mapping[str, Scored]  # seed -> skus bought in the same orders
    viewed_with: Mapping[str, Scored]  # seed -> skus viewed by the same users
    category_of: Mapping[str, str]  # seed -> its category, when known
    popular_in: Mapping[str, Scored]  # category -> its skus by units sold
    popular: Scored = ()  # every sku by units sold
    popular_viewed: Scored = ()  # every sku by views


class Item(msgspec.Struct, frozen=True):
    sku: str
    score: float
    reasons: list[str]


class Ranked(msgspec.Struct, frozen=True):
    """``strategy`` is ``personal`` when any item comes from the user's history."""

    items: list[Item]
    strategy: str


def recall(seeds: Iterable[str], around: Neighbourhood, weights: Weights) -> list[Signal]:
    """The signals for ``seeds``: their neighbours in both graphs, the popular
    items of their categories, then the shop's popular items (not personal)."""
    signals: list[Signal] = []
    categories: dict[str, None] = {}
    for seed in seeds:
        signals.append(
            Signal(f"bought with {seed}", weights.bought_with, around.bought_with.get(seed, ()))
        )
        signals.append(
            Signal(f"viewed with {seed}", weights.viewed_with, around.viewed_with.get(seed, ()))
        )
        if category := around.category_of.get(seed):
            categories[category] = None
    for category in categories:
        signals.append(
            Signal(
                f"popular in category {category}",
                weights.category,
                around.popular_in.get(category, ()),
            )
        )
    signals.append(Signal("popular", weights.popular, around.popular, personal=False))
    signals.append(Signal("popular", weights.popular_viewed, around.popular_viewed, personal=False))
    return signals


def rank(signals: Iterable[Signal], *, exclude: Collection[str], limit: int) -> Ranked:
    """The ``limit`` best candidates that are not in ``exclude``.

    A candidate's score is the sum of its weighted, scaled strengths; its
    reasons are its signals' reasons, strongest first. Ties go to the sku's
    name, so the same data always gives the same list.
    """
    scores: dict[str, float] = {}
    parts: dict[str, list[tuple[float, str]]] = {}
    personal: set[str] = set()
    for signal in signals:
        top = max((strength for _, strength in signal.scored), default=0.0)
        if top <= 0 or signal.weight <= 0:
            continue
        for sku, strength in signal.scored:
            if strength <= 0 or sku in exclude:
                continue
            contribution = signal.weight * strength / top
            scores[sku] = scores.get(sku, 0.0) + contribution
            parts.setdefault(sku, []).append((contribution, signal.reason))
            if signal.personal:
                personal.add(sku)
    best = sorted(scores, key=lambda sku: (-scores[sku], sku))[:limit]
    items = [Item(sku, round(scores[sku], 6), _reasons(parts[sku])) for sku in best]
    strategy = PERSONAL if personal.intersection(best) else POPULAR
    return Ranked(items, strategy)


def _reasons(parts: list[tuple[float, str]]) -> list[str]:
    ordered = sorted(parts, key=lambda part: -part[0])  # stable: equal parts keep signal order
    return list(dict.fromkeys(reason for _, reason in ordered))
