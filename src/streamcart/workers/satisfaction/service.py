"""The satisfaction service: reviews, ratings, post-delivery surveys and their summary.

Reviews go through moderation before anyone sees them (:mod:`.reviews`);
every completed order gets a survey (:mod:`.surveys`); ``satisfaction.summary``
sums both up from counters kept with every change, so it costs the same
however many reviews and surveys there are.
"""

from __future__ import annotations

import msgspec

from streamcart.bus.connection import transaction
from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.workers.satisfaction import keys
from streamcart.workers.satisfaction.messages import (
    Feedback,
    GetSummary,
    ReviewStats,
    SatisfactionSettings,
    Summary,
    SurveyStats,
)
from streamcart.workers.satisfaction.reviews import add_review_handlers, average
from streamcart.workers.satisfaction.surveys import add_survey_handlers, net_promoter_score

SERVICE = "satisfaction"


def build(options: ServiceOptions | None = None) -> Service:
    """The satisfaction service."""
    service = Service(SERVICE, options=options, settings=SatisfactionSettings)
    add_review_handlers(service)
    add_survey_handlers(service)

    @service.on("satisfaction.summary")
    async def summary(msg: GetSummary, ctx: Context) -> Summary:
        """Review and survey counts, the NPS and the latest survey comments."""
        settings: SatisfactionSettings = ctx.config or SatisfactionSettings()
        counts_key = keys.counts(ctx)
        async with await transaction(ctx.redis, counts_key) as pipe:
            pipe.hgetall(counts_key)
            pipe.lrange(keys.feedback(ctx), 0, settings.recent_feedback - 1)
            stored, notes = await pipe.execute()
        counts = {field: int(value) for field, value in stored.items()}
        published, answered = counts.get(keys.PUBLISHED, 0), counts.get(keys.ANSWERED, 0)
        promoters, detractors = counts.get(keys.PROMOTERS, 0), counts.get(keys.DETRACTORS, 0)
        return Summary(
            reviews=ReviewStats(
                published=published,
                rejected=counts.get(keys.REJECTED, 0),
                pending=counts.get(keys.PENDING, 0),
                average_rating=average(counts.get(keys.RATING_SUM, 0), published),
            ),
            surveys=SurveyStats(
                sent=counts.get(keys.SENT, 0),
                answered=answered,
                promoters=promoters,
                passives=counts.get(keys.PASSIVES, 0),
                detractors=detractors,
                nps=net_promoter_score(promoters, detractors, answered),
            ),
            recent_feedback=[msgspec.json.decode(note, type=Feedback) for note in notes],
        )

    return service
