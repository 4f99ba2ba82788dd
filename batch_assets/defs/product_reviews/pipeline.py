"""Classify every review's sentiment with a JSON-schema answer: the DataFrame way in."""

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import DataFrameSource

REVIEW_SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "topics": {"type": "array", "items": {"type": "string"}},
        "needs_follow_up": {"type": "boolean"},
    },
    "required": ["sentiment", "topics", "needs_follow_up"],
    "additionalProperties": False,
}

defs = build_batch_pipeline(
    "review_sentiment",
    DataFrameSource(
        upstream="product_reviews",
        template=RequestTemplate(
            endpoint="/v1/chat/completions",
            model="gpt-4o-mini",
            system_prompt="You label customer reviews of outdoor gear.",
            user_template="Product: {product_name}\nRating: {rating}/5\nReview: {review_text}",
            params={"temperature": 0, "max_tokens": 200},
            response_format=REVIEW_SENTIMENT_SCHEMA,
            response_format_name="review_sentiment",
            custom_id_column="review_id",
        ),
    ),
    group_name="product_reviews",
    metadata={"example": "product_reviews"},
    schedule="0 6 * * *",
    max_cost_usd=1.00,
    description="Sentiment, topics and follow-up flag for every product review.",
)
