"""The retrieval server and the remote clients over real loopback HTTP: Search-R1 API shape, bad input, Serper JSON."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from tapo.io.event_loop import EventLoopThread
from tapo.io.loopback import serve_in_thread
from tapo.tools.search.bm25 import BM25Index
from tapo.tools.search.client import RetrievalClient, parse_document, retrieve_url
from tapo.tools.search.corpus import Passage
from tapo.tools.search.http import SearchServiceError
from tapo.tools.search.serper import SerperClient, parse_serper
from tapo.tools.search.server import MAX_BODY_BYTES, MAX_QUERY_BYTES, SEARCH_BATCH, create_app

ROWS = [
    {"id": "p1", "title": "Eiffel Tower", "text": "The Eiffel Tower in Paris was completed in 1889."},
    {"id": "p2", "title": "Mount Everest", "text": "Mount Everest is the highest mountain on Earth."},
    {"id": "p3", "title": "Amazon River", "text": "The Amazon is the largest river by discharge."},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> BM25Index:
    return BM25Index.build(ROWS, tmp_path_factory.mktemp("srv") / "index")


@pytest.fixture(scope="module")
def server(index: BM25Index) -> Iterator[str]:
    with serve_in_thread(create_app(index, default_topk=2, name="test")) as url:
        yield url


def test_health(server: str) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "index": "test", "passages": 3}


def test_retrieve_has_search_r1_shape(server: str) -> None:
    body = {"queries": ["highest mountain", "eiffel tower paris"], "topk": 1, "return_scores": True}
    result = httpx.post(f"{server}/retrieve", json=body).json()["result"]
    assert len(result) == 2
    (first,), (second,) = result
    assert first["document"] == {
        "id": "p2",
        "contents": '"Mount Everest"\nMount Everest is the highest mountain on Earth.',
    }
    assert isinstance(first["score"], float) and first["score"] > 0
    assert second["document"]["id"] == "p1"
    plain = httpx.post(f"{server}/retrieve", json={"queries": ["amazon river"]}).json()["result"]
    assert plain == [[{"id": "p3", "contents": '"Amazon River"\nThe Amazon is the largest river by discharge.'}]]


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"{not json", 400, "invalid JSON"),
        (b"\xff\xfe", 400, "invalid JSON"),
        (json.dumps({"topk": 3}).encode(), 422, "queries"),
        (json.dumps({"queries": "one string"}).encode(), 422, "queries"),
        (json.dumps({"queries": ["x"], "topk": -1}).encode(), 422, "topk"),
        (json.dumps({"queries": ["x"], "topk": 101}).encode(), 422, "topk"),
        (b'{"queries": [' + b'"x",' * (MAX_BODY_BYTES // 4) + b'"x"]}', 413, "request body"),
    ],
)
def test_bad_requests_get_4xx_with_a_message_and_server_survives(server: str, content, status, message) -> None:
    reply = httpx.post(f"{server}/retrieve", content=content, headers={"content-type": "application/json"})
    assert reply.status_code == status
    assert message in reply.json()["error"]
    assert httpx.get(f"{server}/health").status_code == 200


class RecordingIndex:
    """A real index that records how many queries each ``search_many`` call got: the server's internal batches."""

    def __init__(self, index: BM25Index) -> None:
        self.index, self.batches = index, []

    def __len__(self) -> int:
        return len(self.index)

    def search(self, query: str, k: int) -> list[Passage]:
        return self.index.search(query, k)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.batches.append(len(queries))
        return self.index.search_many(queries, k)


def test_a_search_r1_training_step_is_answered_in_one_request(index: BM25Index) -> None:
    """Issue 16 item 8: Search-R1's trainer posts 512 prompts x 5 samples in one request; that got 422."""
    topics = ("highest mountain", "eiffel", "amazon")
    queries = [f"{topics[i % 3]} number {i}" for i in range(512 * 5)]
    recording = RecordingIndex(index)
    with serve_in_thread(create_app(recording, default_topk=2)) as url:
        # what Search-R1's client does: requests.post(url, json=payload).json()["result"]
        reply = httpx.post(f"{url}/retrieve", json={"queries": queries, "topk": 3, "return_scores": True}, timeout=60)
    result = reply.json()["result"]
    assert len(result) == 2560
    assert [hits[0]["document"]["id"] for hits in result[:3]] == ["p2", "p1", "p3"]
    assert [[d["document"]["id"] for d in hits] for hits in result] == [
        [p.id for p in passages] for passages in index.search_many(queries, 3)
    ]
    assert sum(recording.batches) == 2560 and max(recording.batches) <= SEARCH_BATCH


def test_an_overlong_query_is_cut_not_refused(server: str) -> None:
    """Issue 16 item 8: a 1,500-byte query got 413; it is searched as its first MAX_QUERY_BYTES bytes."""
    head = "highest mountain "
    overlong = head + "é" * ((1500 - len(head)) // 2)  # the cut falls inside a two-byte character
    assert len(overlong.encode()) > MAX_QUERY_BYTES and (MAX_QUERY_BYTES - len(head)) % 2 == 1
    reply = httpx.post(f"{server}/retrieve", json={"queries": [overlong, "amazon"], "topk": 1})
    assert reply.status_code == 200
    assert [hits[0]["id"] for hits in reply.json()["result"]] == ["p2", "p3"]


def test_topk_zero_or_absent_is_the_default(server: str) -> None:
    """Issue 16 item 8: like Search-R1's server (``if not request.topk``), 0 means the default (2 here)."""
    query = ["river mountain tower"]  # matches all three passages
    for body in ({"queries": query, "topk": 0}, {"queries": query, "topk": None}, {"queries": query}):
        reply = httpx.post(f"{server}/retrieve", json=body)
        assert reply.status_code == 200 and len(reply.json()["result"][0]) == 2


def test_an_empty_request_gets_an_empty_result(server: str) -> None:
    assert httpx.post(f"{server}/retrieve", json={"queries": []}).json() == {"result": []}


def test_concurrent_requests_are_all_answered(server: str) -> None:
    async def hammer() -> list[list]:
        async with httpx.AsyncClient(base_url=server) as client:
            replies = await asyncio.gather(
                *(client.post("/retrieve", json={"queries": ["amazon river"], "topk": 1}) for _ in range(40))
            )
        return [r.json()["result"][0][0]["id"] for r in replies]

    assert asyncio.run(hammer()) == ["p3"] * 40


def test_retrieval_client_round_trip(server: str) -> None:
    async def run() -> tuple:
        client = RetrievalClient(server, timeout_s=5)
        one = await client.asearch("highest mountain", 2)
        many = await client.asearch_many(["eiffel", "amazon"], 1)
        await client.aclose()
        return one, many

    one, many = asyncio.run(run())
    assert one.passages[0].id == "p2" and one.passages[0].title == "Mount Everest"
    assert one.passages[0].text == "Mount Everest is the highest mountain on Earth."
    assert [h.passages[0].id for h in many] == ["p1", "p3"]


def test_client_serves_every_batch_of_a_run_on_its_loop(server: str) -> None:
    """A run's batches share one event loop (tapo.io.event_loop), and the client's pool with it."""
    client = RetrievalClient(server)
    with EventLoopThread() as loop:
        for _ in range(3):
            assert loop.run(client.asearch("amazon", 1)).passages[0].id == "p3"
        loop.run(client.aclose())


def test_retrieval_client_errors_on_a_dead_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        asyncio.run(RetrievalClient(f"http://127.0.0.1:{port}", timeout_s=2).asearch("q", 1))


def test_parse_document_and_urls() -> None:
    assert retrieve_url("http://h:1") == "http://h:1/retrieve"
    assert retrieve_url("http://h:1/") == "http://h:1/retrieve"
    assert retrieve_url("http://h:1/custom/retrieve") == "http://h:1/custom/retrieve"
    passage = parse_document({"document": {"id": 7, "contents": '"T"\nline one\nline two'}, "score": 2})
    assert (passage.id, passage.title, passage.text, passage.score) == ("7", "T", "line one\nline two", 2.0)
    assert parse_document({"id": "a", "title": "T", "text": "x"}).title == "T"
    with pytest.raises(SearchServiceError):
        parse_document("nope")


def serper_app(key: str) -> FastAPI:
    """A local server speaking Serper's JSON, checking the key like the real API."""
    app = FastAPI()

    @app.post("/search")
    async def search(request: Request, x_api_key: str = Header("")) -> JSONResponse:
        if x_api_key != key:
            return JSONResponse({"message": "Unauthorized."}, status_code=403)
        body = await request.json()
        organic = [
            {"title": f"Result {i} for {body['q']}", "link": f"https://e.com/{i}", "snippet": f"Snippet {i}."}
            for i in range(body["num"] + 2)
        ]
        graph = {"title": "Paris", "type": "Capital of France", "attributes": {"Population": "2.1 million"}}
        return JSONResponse({"organic": organic, "knowledgeGraph": graph})

    return app


def test_serper_client_against_a_local_serper_style_server() -> None:
    async def run(url: str, key: str):
        client = SerperClient(key, url=f"{url}/search", timeout_s=5)
        try:
            return await client.asearch("capital of france", 2)
        finally:
            await client.aclose()

    with serve_in_thread(serper_app("secret")) as url:
        hits = asyncio.run(run(url, "secret"))
        with pytest.raises(SearchServiceError, match="403"):
            asyncio.run(run(url, "wrong"))
    assert [p.title for p in hits.passages] == ["Result 0 for capital of france", "Result 1 for capital of france"]
    assert hits.panel is not None and hits.panel.title == "Paris"
    assert hits.panel.text == "Capital of France. Population: 2.1 million"


def test_parse_serper_edge_cases() -> None:
    assert parse_serper({}, 3).passages == ()
    assert parse_serper({"organic": [{"link": "x"}, {"title": "T"}]}, 3).passages[0].title == "T"
    with pytest.raises(SearchServiceError):
        parse_serper({"organic": "x"}, 3)
    with pytest.raises(ValueError, match="API key"):
        SerperClient("")


def counting_app(index: BM25Index) -> tuple[FastAPI, list[int]]:
    """The real server app, recording how many queries each /retrieve request carried."""
    app = create_app(index)
    sizes: list[int] = []

    @app.middleware("http")
    async def count(request: Request, call_next):
        if request.url.path == "/retrieve":
            sizes.append(len(json.loads(await request.body())["queries"]))
        return await call_next(request)

    return app, sizes


def test_concurrent_client_calls_are_coalesced_into_batches(index: BM25Index) -> None:
    queries = ["highest mountain", "eiffel tower", "amazon river"] * 4

    async def run(client: RetrievalClient) -> list[str]:
        hits = await asyncio.gather(*(client.asearch(q, 1) for q in queries))
        await client.aclose()
        return [h.passages[0].id for h in hits]

    app, sizes = counting_app(index)
    with serve_in_thread(app) as url:
        assert asyncio.run(run(RetrievalClient(url, max_batch=32, batch_window_s=0.05))) == ["p2", "p1", "p3"] * 4
        assert sizes == [12]
        sizes.clear()
        assert asyncio.run(run(RetrievalClient(url, max_batch=5, batch_window_s=0.05))) == ["p2", "p1", "p3"] * 4
        assert sorted(sizes) == [2, 5, 5]
        sizes.clear()
        assert asyncio.run(run(RetrievalClient(url, max_batch=1))) == ["p2", "p1", "p3"] * 4
        assert sizes == [1] * 12


def test_a_failed_batch_fails_every_waiter_and_one_that_gave_up_blocks_no_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RetrievalClient(f"http://127.0.0.1:{port}", timeout_s=2, batch_window_s=0.05)

    async def run() -> list:
        # the first caller gives up while its query waits for the batch window; the batch still goes out
        given_up = asyncio.wait_for(client.asearch("left behind", 1), 0.001)
        calls = [given_up, *(client.asearch(f"query {i}", 1) for i in range(3))]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)

    with EventLoopThread() as loop:
        for _ in range(2):  # and the next batch on the same loop is not stuck behind it
            first, *rest = loop.run(run())
            assert isinstance(first, TimeoutError) and all(isinstance(r, httpx.ConnectError) for r in rest)
        loop.run(client.aclose())


def test_a_delayed_server_holds_each_request_first(index: BM25Index) -> None:
    body = {"queries": ["highest mountain"], "topk": 1}
    with serve_in_thread(create_app(index, default_topk=2, delay_s=0.3)) as url:
        began = time.monotonic()
        reply = httpx.post(f"{url}/retrieve", json=body).json()
        held = time.monotonic() - began
    assert len(reply["result"]) == 1 and held >= 0.3  # the delay is a floor sleep guarantees, not a speed claim
    with pytest.raises(ValueError, match="delay_s"):
        create_app(index, delay_s=-1)
