"""The topics of each month's reviews, one submission per month: a partitioned pipeline."""

from batch_assets.core.request_template import RequestTemplate
from batch_assets.defs.monthly_reviews.source import MONTHS
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import DataFrameSource

REVIEW_TOPICS_SCHEMA = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "enum": ["fit", "durability", "warmth", "price", "other"]},
        "would_recommend": {"type": "boolean"},
    },
    "required": ["topic", "would_recommend"],
    "additionalProperties": False,
}

defs = build_batch_pipeline(
    "monthly_review_topics",
    DataFrameSource(
        upstream="monthly_reviews",
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            system_prompt="You file customer reviews of outdoor gear under one topic.",
            user_template="Product: {product_name}\nReview: {review_text}",
            params={"temperature": 0, "max_tokens": 60},
            response_format=REVIEW_TOPICS_SCHEMA,
            response_format_name="review_topic",
            custom_id_column="review_id",
        ),
    ),
    partitions_def=MONTHS,
    group_name="monthly_reviews",
    metadata={"example": "monthly_reviews"},
    description="The main topic of every review, and whether its writer would recommend the "
    "product; each month is its own submission.",
)
