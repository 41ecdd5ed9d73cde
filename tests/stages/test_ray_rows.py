"""The Ray engine's pure row functions and its HTTP session, without Ray: what a row becomes on the wire,
and what an answer (or a failure) becomes in the database's terms."""

from __future__ import annotations

import asyncio
import json

import pytest

from clinreason.config import ProjectConfig
from clinreason.domain.records import Item
from clinreason.llm.base import LLMParams
from clinreason.llm.openai_backend import OpenAIBackend
from clinreason.stages import ray_rows
from clinreason.stages.ray_engine import job_row, outcome_of, plan_from_config
from clinreason.stages.runner import Job
from clinreason.testing.fake_server import FakeOpenAIServer, FaultPlan

MESSAGES = [{"role": "system", "content": "You are a clinician."}, {"role": "user", "content": "Why A?"}]


def _job(item_id: str = "abc123", version: int = 2, schema: dict | None = None) -> Job:
    item = Item(id=item_id, project_id=1, question="Why?", options=[("A", "a"), ("B", "b")], answer_labels=["A"],
                language="en", state="generating", next_version=version)
    params = LLMParams(temperature=0.3, max_tokens=500, seed=7, json_schema=schema,
                       idempotency_key=f"{item_id}:v{version}")
    return Job(item=item, kind="draft", version=version, messages=MESSAGES, prompt_hash="ph", params=params,
               request_hash="rh", parent_version=None)


def test_a_row_becomes_the_very_body_the_native_backend_sends_with_its_idempotency_key():
    schema = {"type": "object", "properties": {"final_answer": {"enum": ["A", "B"]}}}
    job = _job(schema=schema)
    row = job_row(job)
    assert set(row) == {"item_id", "version", "idempotency_key", "request"}
    assert isinstance(row["request"], str)  # one flat schema for every row, whatever its JSON schema
    payload = ray_rows.http_preprocess(row, model="m-1")["payload"]
    private = payload.pop(ray_rows.PRIVATE)
    assert private == {"idempotency_key": "abc123:v2"}
    native = OpenAIBackend("http://x/v1", "m-1").build_payload(MESSAGES, job.params, with_response_format=True)
    assert payload == native
    assert payload["response_format"]["json_schema"]["schema"] == schema and payload["seed"] == 7


def test_vllm_rows_carry_the_same_sampling_parameters_and_the_schema_as_structured_output():
    schema = {"type": "object"}
    out = ray_rows.vllm_preprocess(job_row(_job(schema=schema)))
    assert out["messages"] == MESSAGES
    assert out["sampling_params"] == {"temperature": 0.3, "max_tokens": 500, "top_p": 1.0, "seed": 7,
                                      "structured_outputs": {"json": schema}}


def _envelope(body=None, *, error=None, attempts=1):
    return {"envelope": 1, "url": "http://h/v1/chat/completions", "status": 200 if error is None else 400,
            "body": json.dumps(body) if body is not None else "", "error": error, "attempts": attempts,
            "latency_ms": 12.5}


def test_an_answer_becomes_text_reasoning_usage_and_cost():
    body = {"model": "served-m", "choices": [{"message": {"content": "<think>hmm</think>1. a\n2. b\nFinal answer: A"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 40}}
    row = {**job_row(_job()), "http_response": _envelope(body, attempts=2)}
    result = ray_rows.http_postprocess(row)
    assert set(result) == set(ray_rows.RESULT_COLUMNS)
    assert result["text"] == "1. a\n2. b\nFinal answer: A" and result["reasoning"] == "hmm"
    assert (result["prompt_tokens"], result["completion_tokens"], result["attempts"]) == (100, 40, 2)
    assert result["error"] is None and result["served_model"] == "served-m"
    outcome = outcome_of(result, _job(), model="m-1", prices={"m-1": (1.0, 2.0)})
    assert outcome.completion is not None and outcome.error is None
    assert outcome.completion.cost == pytest.approx((100 * 1.0 + 40 * 2.0) / 1e6)
    assert outcome.completion.model == "m-1" and outcome.completion.latency_ms == 12.5


@pytest.mark.parametrize("response, reason", [
    (_envelope(error="LLM request failed: http://h/v1/chat/completions answered HTTP 400: bad option"), "HTTP 400: bad option"),
    (_envelope({"error": {"message": "context length exceeded", "type": "invalid_request_error"}}),
     "answered with an error: context length exceeded"),
    (_envelope({"object": "error", "message": "model not loaded", "code": 404}), "model not loaded"),
    (_envelope({"id": "x", "choices": []}), "malformed response body"),
    ({"error": {"message": "bare Ray body"}}, "bare Ray body"),
])
def test_a_failed_row_becomes_a_failed_item_with_its_reason(response, reason):
    result = ray_rows.http_postprocess({**job_row(_job()), "http_response": response})
    assert result["error"] and reason in result["error"] and result["error"].startswith("LLM request failed")
    outcome = outcome_of(result, _job(), model="m", prices={})
    assert outcome.completion is None and reason in (outcome.error or "")


def test_vllm_output_and_its_error_rows():
    row = {**job_row(_job()), "generated_text": "1. x\n2. y\nFinal answer: B", "num_input_tokens": 30,
           "num_generated_tokens": 9, "time_taken_llm": 0.5}
    result = ray_rows.vllm_postprocess(row)
    assert (result["text"], result["prompt_tokens"], result["completion_tokens"]) == ("1. x\n2. y\nFinal answer: B", 30, 9)
    assert result["latency_ms"] == 500.0
    failed = ray_rows.vllm_postprocess({**job_row(_job()), "__inference_error__": "CUDA out of memory"})
    assert "CUDA out of memory" in failed["error"]


def test_the_plan_names_what_is_missing():
    pc = ProjectConfig()
    with pytest.raises(ValueError, match="CLINREASON_LLM_BASE_URL"):
        plan_from_config(pc, api_key=None)
    pc.llm.base_url = "http://a:8000/v1/"
    with pytest.raises(ValueError, match="CLINREASON_LLM_MODEL"):
        plan_from_config(pc, api_key=None)
    pc.llm.model = "qwen"
    pc.generate.ray_base_urls = ["http://b:8000/v1", "http://a:8000/v1"]
    plan = plan_from_config(pc, api_key="sk-secret-9", concurrency=40)
    assert plan.base_urls == ("http://a:8000/v1", "http://b:8000/v1")  # de-duplicated, [llm] base_url first
    assert plan.batch_size == 16 and plan.actors_per_endpoint == 3  # 40 requests in flight per endpoint
    assert "sk-secret-9" not in repr(plan)
    pc.generate.ray_engine = "vllm"
    with pytest.raises(ValueError, match="ray_model_path"):
        plan_from_config(pc, api_key=None)
    pc.generate.ray_model_path = "/models/qwen2.5-7b"
    assert plan_from_config(pc, api_key=None).engine == "vllm"


# -- the session, against the fake server over real sockets -----------------------------------------------

def _post_all(server: FakeOpenAIServer, rows: list[dict], *, max_attempts: int = 3, api_key: str | None = "sk-1"):
    factory = ray_rows.EndpointSessionFactory(api_key=api_key, timeout=10, max_attempts=max_attempts, connections=16,
                                              base_delay=0.0, max_delay=0.0)
    assert "sk-1" not in repr(factory)

    async def go():
        async with factory() as session:
            started = [session.post(f"{server.base_url}/chat/completions", headers={"Content-Type": "application/json"},
                                    data=json.dumps(ray_rows.http_preprocess(row, model="fake-model")["payload"]))
                       for row in rows]
            answers = []
            for request in started:  # Ray's HTTP stage awaits them one after another, as here
                async with await request as response:
                    assert response.status == 200
                    answers.append(await response.json())
            return answers

    return asyncio.run(go())


def test_the_session_sends_a_whole_batch_at_once_with_keys_and_hands_ray_final_envelopes():
    rows = [job_row(_job(item_id=f"item{i}", version=1)) for i in range(8)]
    seen_when_first_answered: list[int] = []

    class Server(FakeOpenAIServer):
        def _respond(self, request):
            seen_when_first_answered.append(len(self.requests))
            return super()._respond(request)

    with Server.running_in_thread(latency=0.3) as server:
        answers = _post_all(server, rows)
    # all eight were at the server before the first answer was written: the batch went out at once
    assert seen_when_first_answered[0] == 8
    assert sorted(r["idempotency_key"] for r in server.requests) == sorted(f"item{i}:v1" for i in range(8))
    assert all(r["authorized"] for r in server.requests)
    results = [ray_rows.http_postprocess({**row, "http_response": a}) for row, a in zip(rows, answers)]
    assert all(r["error"] is None and r["text"] for r in results)


def test_the_session_retries_what_the_native_backend_retries_and_fails_the_rest_with_the_reason():
    rows = [job_row(_job(item_id=f"item{i}", version=1)) for i in range(2)]
    plan = FaultPlan(scripted=["error_500", "ok", "malformed", "ok"])
    with FakeOpenAIServer.running_in_thread(fault_plan=plan) as server:
        answers = _post_all(server, rows)
    # both went out at once: the first drew the 500, its retry the cut body, its third try an answer
    assert sorted(a["attempts"] for a in answers) == [1, 3] and not any(a["error"] for a in answers)

    class Rejecting(FakeOpenAIServer):
        async def _answer_chat(self, request, record, reader, writer):
            record["status"] = 400
            await self._send(writer, 400, {"error": {"message": "option E does not exist", "key": "sk-1"}})
            return True

    with Rejecting.running_in_thread() as server:
        [answer] = _post_all(server, rows[:1])
    assert len(server.requests) == 1  # a 400 is not worth asking again
    assert "HTTP 400" in answer["error"] and "option E does not exist" in answer["error"]
    assert "sk-1" not in answer["error"]  # an echoed key is redacted

    with FakeOpenAIServer.running_in_thread(fault_plan=FaultPlan(error_500=1.0)) as server:
        [answer] = _post_all(server, rows[:1], max_attempts=3)
    assert len(server.requests) == 3 and "after 3 attempts" in answer["error"]
    assert ray_rows.http_postprocess({**rows[0], "http_response": answer})["error"].startswith("LLM request failed")


# -- the processors' configs (Ray's own pydantic models; built, not run: vLLM needs GPUs) -------------------

def _require_ray():
    import importlib.util
    import os

    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but ray is not importable: the dev extra installs ray[data] for the Ray engine's tests")
        pytest.skip("ray is not installed (pip install 'clinreason[cluster]'): the Ray engine's tests need it")


def test_the_vllm_processor_config_loads_the_configured_model_and_keeps_failed_rows():
    _require_ray()
    from ray.data.llm import vLLMEngineProcessorConfig

    from clinreason.stages.ray_engine import vllm_processor_config

    pc = ProjectConfig()
    pc.generate.ray_engine, pc.generate.ray_model_path = "vllm", "/models/qwen2.5-7b-instruct"
    pc.generate.ray_vllm_replicas, pc.generate.ray_batch_size = 4, 32
    pc.generate.ray_vllm_engine_kwargs = {"max_model_len": 8192, "enable_prefix_caching": True}
    config = vllm_processor_config(plan_from_config(pc, api_key=None))
    assert isinstance(config, vLLMEngineProcessorConfig)
    assert config.model_source == "/models/qwen2.5-7b-instruct"
    assert {k: config.engine_kwargs[k] for k in ("tensor_parallel_size", "max_model_len", "enable_prefix_caching")} \
        == {"tensor_parallel_size": 1, "max_model_len": 8192, "enable_prefix_caching": True}
    assert (config.batch_size, config.concurrency) == (32, 4)
    assert config.should_continue_on_error  # a failed row becomes a failed item, not a failed run


def test_the_http_processor_config_points_at_the_endpoint_with_a_fixed_pool_and_our_session():
    _require_ray()
    from clinreason.stages.ray_engine import http_processor_config

    pc = ProjectConfig()
    pc.llm.base_url, pc.llm.model = "http://gpu-1:8000/v1", "qwen"
    plan = plan_from_config(pc, api_key="sk-hidden-3", concurrency=64)
    config = http_processor_config(plan, plan.base_urls[0])
    assert config.url == "http://gpu-1:8000/v1/chat/completions"
    assert (config.batch_size, config.concurrency, config.max_retries) == (16, (4, 4), 0)
    assert isinstance(config.session_factory, ray_rows.EndpointSessionFactory)
    assert "sk-hidden-3" not in config.model_dump_json() and not config.headers  # the key is not in Ray's config


def test_without_ray_the_engine_says_how_to_get_it(monkeypatch):
    import sys

    from clinreason.stages.ray_engine import RayUnavailable, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(RayUnavailable, match=r"pip install 'clinreason\[cluster\]'"):
        import_ray()
