import pickle

from refstack.api.errors import ApiError, ai_body, body_for, not_found, render_body


def test_render_envelope():
    err = ApiError(429, "rate_limit_exceeded", "slow down", retry_after=2.2)
    assert render_body(err) == {"error": {"code": "rate_limit_exceeded", "message": "slow down", "retry_after": 3}}
    assert err.headers["Retry-After"] == "3"


def test_ai_envelope_maps_codes():
    body = ai_body(ApiError(400, "invalid_parameter", "model is required", field="model"))
    assert body == {"success": False, "message": "model is required", "error_code": "VALIDATION_ERROR",
                    "field": "model"}
    assert ai_body(ApiError(402, "insufficient_credits", "x"))["error_code"] == "INSUFFICIENT_CREDITS"
    assert ai_body(ApiError(401, "unauthorized", "x"))["error_code"] == "UNAUTHORIZED"
    assert ai_body(not_found())["error_code"] == "NOT_FOUND"


def test_envelope_chosen_by_path():
    err = not_found()
    assert "error" in body_for("/v1/videos/x", err)
    assert body_for("/api/v1/ai/jobs/x", err)["success"] is False


def test_api_error_pickles():
    err = pickle.loads(pickle.dumps(ApiError(400, "invalid_parameter", "m", field="f", retry_after=1)))
    assert (err.status, err.code, err.field, err.retry_after) == (400, "invalid_parameter", "f", 1)
