"""The OpenAI-compatible engine against a small OpenAI-compatible server on loopback, started by the tests.

The server serves deterministic scripted completions over real HTTP.

The reply to a request is the script entry for the turn the conversation is at (the number of
``<response>`` blocks already in it), cut at the first stop string the way real servers cut it (the stop
string itself is not returned). ``fail_first`` answers 503 to that many requests to exercise retries.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tapo.engines.base import SamplingParams
from tapo.engines.openai_compat import (
    OpenAICompatEngine,
    OpenAIEngineError,
    infer_stop,
    parse_openai_model,
    split_chat,
)
from tapo.io.loopback import serve_in_thread as serve


def build_app(script: list[str], fail_first: int = 0, report_stop_reason: bool = False) -> FastAPI:
    app = FastAPI()
    app.state.requests = []
    app.state.failures_left = fail_first

    def complete(conversation: str, body: dict[str, Any]) -> dict[str, Any]:
        turn = conversation.count("<response>")
        text = script[min(turn, len(script) - 1)]
        stops = body.get("stop") or []
        hits = [(text.find(s), s) for s in stops if s in text]
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        matched = None
        if hits:
            pos, matched = min(hits)
            text = text[:pos]
        words = text.split(" ")
        if len(words) > body["max_tokens"]:
            text, matched = " ".join(words[: body["max_tokens"]]), None
            choice["finish_reason"] = "length"
        if report_stop_reason:
            choice["stop_reason"] = matched
        choice["text"] = text
        return choice

    async def guard(request: Request) -> dict[str, Any] | JSONResponse:
        body = await request.json()
        app.state.requests.append(body)
        if app.state.failures_left > 0:
            app.state.failures_left -= 1
            return JSONResponse({"error": "busy"}, status_code=503)
        if body.get("model") != "scripted":
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, status_code=404)
        return body

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await guard(request)
        if isinstance(body, JSONResponse):
            return body
        return {"object": "text_completion", "choices": [complete(body["prompt"], body)]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await guard(request)
        if isinstance(body, JSONResponse):
            return body
        conversation = "".join(m["content"] for m in body["messages"])
        choice = complete(conversation, body)
        choice["message"] = {"role": "assistant", "content": choice.pop("text")}
        return {"object": "chat.completion", "choices": [choice]}

    return app


# -- the engine against the server ---------------------------------------------------------------------

SCRIPT = [
    "<think> I should look it up. </think>\n<search> capital of France </search> trailing words",
    "<think> Paris it is. </think>\n<answer> Paris </answer>",
]
STOPS = ("</search>", "</code>", "</answer>")


@pytest.fixture
def prompt_ids(tokenizer) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer.encode(text, add_special_tokens=False)


def engine(tokenizer, url: str, **kwargs) -> OpenAICompatEngine:
    return OpenAICompatEngine(url + "/v1", "scripted", tokenizer, retry_backoff_s=0.01, **kwargs)


@pytest.mark.parametrize("report_stop_reason", [False, True])
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_generation_ends_with_the_stop_string(tokenizer, prompt_ids, api, report_stop_reason):
    app = build_app(SCRIPT, report_stop_reason=report_stop_reason)
    with serve(app) as url:
        params = SamplingParams(max_new_tokens=64, temperature=0.0, stop=STOPS)
        [gen] = engine(tokenizer, url, api=api).generate([prompt_ids], params)
    text = tokenizer.decode(gen.token_ids)
    assert text == "<think> I should look it up. </think>\n<search> capital of France </search>"
    assert (gen.finish_reason, gen.stop, gen.logprobs) == ("stop", "</search>", None)
    [request] = app.state.requests
    assert request["stop"] == list(STOPS) and request["max_tokens"] == 64 and request["temperature"] == 0.0
    if api == "completions":
        assert request["prompt"] == tokenizer.decode(prompt_ids)
    else:
        assert request["messages"][-1] == {"role": "user", "content": "What is the capital of France?"}


def test_chat_continues_the_assistant_turn(tokenizer, prompt_ids):
    """The second turn: the model's first action and the tool output go back as the assistant prefix."""
    app = build_app(SCRIPT)
    first = "<search> capital of France </search>\n\n<response>Doc 1: Paris</response>\n\n"
    ids = prompt_ids + tokenizer.encode(first, add_special_tokens=False)
    with serve(app) as url:
        gen = asyncio.run(engine(tokenizer, url, api="chat").agenerate(ids, SamplingParams(stop=STOPS)))
    assert tokenizer.decode(gen.token_ids).endswith("<answer> Paris </answer>")
    [request] = app.state.requests
    assert request["messages"][-1] == {"role": "assistant", "content": first}
    assert request["continue_final_message"] is True and request["add_generation_prompt"] is False


def test_length_and_concurrency(tokenizer, prompt_ids):
    app = build_app(["one two three four five six seven eight"])
    with serve(app) as url:
        gens = engine(tokenizer, url, max_concurrency=2).generate([prompt_ids] * 5, SamplingParams(max_new_tokens=3))
    assert [g.finish_reason for g in gens] == ["length"] * 5
    assert {tokenizer.decode(g.token_ids) for g in gens} == {"one two three"}


def test_end_of_turn_gets_the_eos_token(tokenizer, prompt_ids):
    with serve(build_app(["no tags at all"], report_stop_reason=True)) as url:
        [gen] = engine(tokenizer, url).generate([prompt_ids], SamplingParams(stop=STOPS))
    assert (gen.finish_reason, gen.stop) == ("eos", None)
    assert gen.token_ids[-1] == tokenizer.eos_token_id and tokenizer.decode(gen.token_ids[:-1]) == "no tags at all"


def test_retries_then_succeeds(tokenizer, prompt_ids):
    app = build_app(SCRIPT[1:], fail_first=2)
    with serve(app) as url:
        [gen] = engine(tokenizer, url, max_retries=2).generate([prompt_ids], SamplingParams(stop=STOPS))
    assert gen.stop == "</answer>" and len(app.state.requests) == 3


def test_errors_are_clear(tokenizer, prompt_ids):
    with serve(build_app(SCRIPT, fail_first=5)) as url, pytest.raises(OpenAIEngineError, match="after 2 attempts"):
        engine(tokenizer, url, max_retries=1).generate([prompt_ids], SamplingParams())
    with serve(build_app(SCRIPT)) as url:
        bad = OpenAICompatEngine(url + "/v1", "nope", tokenizer)
        with pytest.raises(OpenAIEngineError, match="HTTP 404"):
            bad.generate([prompt_ids], SamplingParams())
    with pytest.raises(ValueError, match="chat template"):
        split_chat(tokenizer, "plain text, no template")


def test_spec_parsing():
    assert parse_openai_model("openai:http://h:8000/v1/#m-1") == ("http://h:8000/v1", "m-1")
    for bad in ("openai:http://h:8000/v1", "openai:h:8000#m", "http://x#m"):
        with pytest.raises(ValueError):
            parse_openai_model(bad)


def test_infer_stop_prefers_the_last_opened_tag():
    assert infer_stop("<search> a </search> <code> print(1) ", STOPS) == "</code>"
    assert infer_stop("no tags", STOPS) is None
    assert infer_stop("no tags", ("</answer>",)) == "</answer>"


# -- `tapo eval` with an OpenAI-compatible model, then `tapo report` -------------------------------------


def test_tapo_eval_and_report_over_http(tmp_path):
    from typer.testing import CliRunner

    from tapo.cli.main import app as cli
    from tapo.data.io import save_examples
    from tapo.data.schema import Example

    data = save_examples(
        [
            Example(id="fr", question="Capital of France?", data_source="nq", golds=["Paris"]),
            Example(id="de", question="Capital of Germany?", data_source="nq", golds=["Berlin"]),
        ],
        tmp_path / "qa.jsonl",
    )
    server = build_app(SCRIPT[1:])
    out = tmp_path / "eval"
    with serve(server) as url:
        args = [
            "eval",
            "--model",
            f"openai:{url}/v1#scripted",
            "--data",
            str(data),
            "--tools",
            "none",
            "--out",
            str(out),
        ]
        result = CliRunner().invoke(cli, [*args, "reward.overlong.enabled=false"])
    assert result.exit_code == 0, result.output
    assert len(server.state.requests) == 2 and all(r["temperature"] == 0.0 for r in server.state.requests)
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"]["overall"]["acc"] == 0.5 and saved["template"] == "no_tools"
    assert "overall" in result.output and "50.0" in result.output
    report = CliRunner().invoke(cli, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert (out / "report" / "report.html").is_file()


def test_tapo_eval_rejects_bad_arguments_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from tapo.cli.main import app as cli

    bad_mode = CliRunner().invoke(cli, ["eval", "-m", "x", "-d", "y", "--tools", "web"])
    assert bad_mode.exit_code == 2 and "choose one of all, search, code, none" in bad_mode.output
    missing = CliRunner().invoke(cli, ["eval", "-m", "x", "-d", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "neither a data file nor a benchmark" in missing.output
    greedy = CliRunner().invoke(cli, ["eval", "-m", "x", "-d", "nq", "-k", "3", "--greedy"])
    assert greedy.exit_code == 2 and "identical samples" in greedy.output
    bad_key = CliRunner().invoke(cli, ["eval", "-m", "x", "-d", "nq", "eval.nope=1"])
    assert bad_key.exit_code == 2
    no_report = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert no_report.exit_code == 2 and "nothing to report" in no_report.output
