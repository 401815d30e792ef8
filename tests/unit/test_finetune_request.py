"""FinetuneRequest's strict JSON types, and stored jobs' lenient reading."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.schemas.finetune import FinetuneParams, FinetuneRequest


def test_a_json_integer_still_counts_as_a_float() -> None:
    params = FinetuneRequest.model_validate_json('{"learning_rate": 1, "weight_decay": 0}')
    assert params.learning_rate == 1.0 and params.weight_decay == 0.0


@pytest.mark.parametrize(
    "body",
    ['{"force": "yes"}', '{"force": 1}', '{"epochs": true}', '{"epochs": 2.0}', '{"amp": "on"}'],
)
def test_a_request_of_the_wrong_json_type_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        FinetuneRequest.model_validate_json(body)


def test_a_stored_job_is_read_as_before() -> None:
    """Jobs stored as JSON are read with FinetuneParams, whose types stay lax: a job
    queued by an earlier release must stay readable."""
    stored = FinetuneParams.model_validate({"epochs": 2.0, "force": 0})
    assert stored.epochs == 2 and stored.force is False
