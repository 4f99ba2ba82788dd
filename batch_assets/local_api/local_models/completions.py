"""The /v1/completions endpoint."""

from typing import Any

from batch_assets.local_api import ids
from batch_assets.local_api.json_schema_instance import GenerationBudget
from batch_assets.local_api.local_models.answer_text import (
    apply_stop,
    canned_sentence,
    clip_to_budget,
    stable_digest,
    system_fingerprint,
)
from batch_assets.local_api.local_models.parameters import (
    MAX_CHOICES,
    int_param,
    number_param,
    require_model,
)
from batch_assets.local_api.local_models.request_inputs import check_prompts
from batch_assets.local_api.local_models.token_counting import count_prompt_tokens, count_tokens

COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def answer_completions(
    body: dict[str, Any], created: int, _budget: GenerationBudget
) -> dict[str, Any]:
    """Answer /v1/completions with a text_completion object (one choice per prompt and n)."""
    model = require_model(body)
    prompts = check_prompts(body, "prompt")
    n = int_param(body, "n", low=1, high=MAX_CHOICES) or 1
    max_tokens = int_param(body, "max_tokens", low=0)
    budget = COMPLETIONS_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    number_param(body, "temperature", low=0, high=2)
    number_param(body, "top_p", low=0, high=1)
    echo = body.get("echo") is True
    answer_key = stable_digest(model, body.get("prompt"), body.get("seed"))
    choices = []
    completion_tokens = 0
    for prompt_index, prompt in enumerate(prompts):
        prompt_text = prompt if isinstance(prompt, str) else ""
        for variant in range(n):
            sentence = " " + canned_sentence(prompt_text, answer_key, prompt_index * n + variant)
            text, cut = clip_to_budget(apply_stop(sentence, body.get("stop")), budget)
            completion_tokens += count_tokens(text)
            choices.append(
                {
                    "text": prompt_text + text if echo else text,
                    "index": prompt_index * n + variant,
                    "logprobs": None,
                    "finish_reason": "length" if cut else "stop",
                }
            )
    prompt_tokens = count_prompt_tokens(body.get("prompt"))
    return {
        "id": ids.completion_id(),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": system_fingerprint(model),
    }
