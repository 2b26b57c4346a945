"""API scenarios (R §二, R §六.3, A §1): the front door under bad credentials, bad input and load."""

from renderchaos.faults.spec import Described, Input
from renderchaos.platforms.base import Feature
from renderchaos.scenario import Runbook, Scenario
from renderchaos.wait import Wait

AUTH = Scenario(
    id="api.auth",
    title="every 401 names the mistake; a new key / re-login then works",
    runbook=Runbook("R", "§二.1 认证错误 (A §1.1 401 Unauthorized)"),
    faults=(Input("no header; 'Authorisation' misspelt; no 'Bearer'; key with pasted whitespace; a key that "
                  "does not exist (wrong key, garbled key)"),
            Described("a revoked (deleted) API key still sent", (Feature.AUTH.value,)),
            Described("an expired access token on both APIs", (Feature.AUTH.value,))),
    needs=(Feature.AUTH.value, Feature.AI_JOBS.value),
    tier="gate",
    symptom="401 unauthorized with the documented envelope",
    remedy="重新生成API Key / 重新登录获取新 token",
    detect=Wait(20.0),
    catches=("api_auth_generic_message", "api_unknown_key_403"),
)

RATE_LIMIT = Scenario(
    id="api.rate_limit",
    title="a burst above the per-key limit gets 429 with Retry-After; waiting that long works; tenants isolated",
    runbook=Runbook("R", "§二.2 限流错误"),
    faults=(Input("one tenant bursts above its per-key limit"),),
    needs=(Feature.RATE_LIMITS.value, Feature.ACCOUNTS.value),
    tier="gate",
    symptom="429 rate_limit_exceeded with Retry-After header and retry_after in the body",
    remedy="wait Retry-After seconds, then retry (the runbook's api_call_with_retry)",
    detect=Wait(20.0),
    recover=Wait(30.0),
    catches=("api_no_rate_limit",),
)

VALIDATION = Scenario(
    id="api.validation",
    title="bad request bodies get 400 invalid_parameter / VALIDATION_ERROR naming the field, never 500",
    runbook=Runbook("R", "§二.3 参数错误 (A §1.3 400 Bad Request)"),
    faults=(Input("missing template_id, template_id: 123, data.price: \"99\", malformed JSON, oversize body, "
                  "empty body, wrong types on the AI API, login without phone"),),
    needs=(Feature.VALIDATION.value,),
    tier="gate",
    symptom="400 with field",
    remedy="send the corrected request (the runbook's ✅ 正确 body)",
    catches=("api_500_on_bad_input", "api_500_on_malformed_json"),
)

NOT_FOUND = Scenario(
    id="api.not_found",
    title="unknown and another user's ids give byte-identical 404s (no existence leak)",
    runbook=Runbook("A", "§1.2 404 Not Found (R §二)"),
    faults=(Input("GET / DELETE / download of an unknown id, a malformed id and another user's job / conversation"),),
    needs=(Feature.ACCOUNTS.value, Feature.AI_JOBS.value),
    tier="gate",
    symptom="404 NOT_FOUND",
    remedy="the owner reads their own resource",
    detect=Wait(30.0),
    catches=("api_leak_existence",),
)

CREDITS = Scenario(
    id="api.credits",
    title="balance below the job cost gets 402; concurrent submits never drive the balance negative",
    runbook=Runbook("A", "§1.4 402 Payment Required"),
    faults=(Described("balance one credit below the cheapest job", (Feature.CREDITS.value,)),
            Input("10 concurrent submits against a balance worth 3 jobs")),
    needs=(Feature.CREDITS.value, Feature.AI_JOBS.value),
    tier="gate",
    symptom="402 INSUFFICIENT_CREDITS",
    remedy="充值积分 (admin top-up), then the submit is accepted",
    catches=("api_negative_balance",),
)

FUZZ = Scenario(
    id="api.fuzz",
    title="schema-driven fuzzing of every operation (Schemathesis over the platform's OpenAPI): no 5xx, no stack "
          "trace, every answer documented",
    runbook=Runbook("R", "§二.3 参数错误 (A §1.3)"),
    faults=(Input("explicit cases every run: malformed JSON bodies, and a lone surrogate, null, huge numbers and "
                  "over-long strings in every field of every operation's body"),
            Input("Schemathesis-generated positive and negative requests for every operation of the platform's "
                  "OpenAPI (seeded from the run seed; a bounded count per operation)")),
    needs=(Feature.OPENAPI.value,),
    tier="gate",
    symptom="4xx envelopes only",
    remedy="none needed: a valid request still works",
    detect=Wait(120.0),
    catches=("api_500_on_bad_input", "api_stack_trace_in_body", "api_500_on_malformed_json", "api_500_on_lone_surrogate",
             "api_500_on_null_ttl", "api_500_on_huge_ttl", "api_500_on_long_asset_name"),
)

SQL_INJECTION = Scenario(
    id="api.sql_injection",
    title="SQL injection payloads in every string field and id: no 5xx, no extra rows, schema unchanged",
    runbook=Runbook("R", "§二.3 参数错误"),
    faults=(Input("injection payloads in template_id, data.*, assets, model, prompt, conversation_id, phone, password, "
          "path ids and query parameters"),),
    needs=(Feature.ACCOUNTS.value, Feature.AI_JOBS.value, "database:refstack"),  # its tables are compared
    tier="gate",
    symptom="4xx for the malformed ones, payloads stored literally where they are valid text",
    remedy="none needed: the owner's data and the schema are untouched",
    detect=Wait(60.0),
    catches=("api_sql_concat_status",),
)

FLOOD = Scenario(
    id="api.flood",
    title="one client floods: its excess gets 429/503, other clients keep their latency",
    runbook=Runbook("R", "§六.3 限流 (limit_req zone=api rate=10r/s burst=20)"),
    faults=(Described("one client (127.0.0.2) floods with 2 connections, bounded to 600 requests / 6 s",
                      (Feature.RATE_LIMITS.value,)),),
    needs=(Feature.RATE_LIMITS.value, Feature.ACCOUNTS.value),
    tier="gate",
    symptom="the flooder gets 429 beyond 10 r/s + burst 20",
    remedy="the flood stops; the flooder is served again after Retry-After",
    detect=Wait(10.0),
    recover=Wait(30.0),
    catches=("api_no_rate_limit",),
)
