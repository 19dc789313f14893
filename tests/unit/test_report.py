"""The HTML report: built from a training run dir and from an eval dir, valid PNGs, and a clean render in
headless Chromium (no console or network errors, a screenshot that is not blank)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tapo.data.schema import Example
from tapo.eval.metrics import accuracy_by_searches, compute_metrics
from tapo.eval.plots import curve_panels
from tapo.eval.records import to_records
from tapo.eval.report import build_report, sample_rows
from tapo.eval.results import EvalResult, load_result, save_ablation
from tapo.io.atomic import write_jsonl
from tapo.records import RewardBreakdown, Trajectory, Turn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NASTY = "<script>alert('x')</script> & <b>bold</b>"


def make_traj(i: int, acc: bool, searches: int, source: str = "nq") -> Trajectory:
    body = "".join(
        f"<think> step {j} </think><search> query {j} </search>\n\n<response>Doc 1: (Title: T) {NASTY}</response>\n\n"
        for j in range(searches)
    )
    text = body + "<code>print(1 < 2)</code>\n\n<response>True</response>\n\n<answer> Paris </answer>"
    turns = [Turn("search", f"query {j}", output=NASTY) for j in range(searches)]
    turns += [Turn("code", "print(1 < 2)", output="True"), Turn("answer", "Paris")]
    return Trajectory(
        prompt_ids=[1],
        response_ids=list(range(30)),
        loss_mask=[1] * 20 + [0] * 10,
        turns=turns,
        response_text=text,
        finish_reason="stop",
        example=Example(id=f"q{i}", question=f"Q{i} {NASTY}", data_source=source, golds=["Paris"]),
        reward=RewardBreakdown(
            format_ok=True, score=float(acc), penalty=0.0, total=float(acc), acc=acc, answer="Paris"
        ),
    )


def eval_result(mode: str, trajs: list[Trajectory]) -> EvalResult:
    records = to_records(trajs)
    return EvalResult(
        model="tiny",
        data="set.jsonl",
        tools_mode=mode,
        template="base",
        samples=1,
        greedy=True,
        metrics=compute_metrics(records),
        accuracy_by_searches=accuracy_by_searches(records),
        trajectories=trajs,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A training run as the trainer leaves it, with an ablation evaluation under eval/."""
    run = tmp_path / "runs" / "demo"
    rows = [
        {"step": s, "reward/mean": s / 10, "reward/acc": s / 12, "tools/search_per_traj": 1 + s % 2}
        | {"response/model_tokens": 50 + s, "time/step_s": 2.0}
        | ({"sampling/filtered_frac": 0.5} if s % 2 else {"note": "no filter key this step"})
        for s in range(1, 9)
    ]
    write_jsonl(run / "metrics.jsonl", rows)
    trajs = [make_traj(i, acc=i % 2 == 0, searches=i % 3, source=("nq", "gsm8k")[i % 2]) for i in range(8)]
    write_jsonl(run / "trajectories.jsonl", [t.to_row(step=1 + i) for i, t in enumerate(trajs)])  # as the trainer
    results = []
    for mode in ("all", "none"):
        result = eval_result(mode, trajs if mode == "all" else [make_traj(i, False, 0) for i in range(3)])
        result.save(run / "eval" / "abl" / mode)
        results.append(result)
    save_ablation(results, run / "eval" / "abl")
    return run


def test_results_round_trip(run_dir: Path):
    loaded = load_result(run_dir / "eval" / "abl" / "all")
    fresh = eval_result(
        "all", [make_traj(i, acc=i % 2 == 0, searches=i % 3, source=("nq", "gsm8k")[i % 2]) for i in range(8)]
    )
    assert loaded.metrics == fresh.metrics and loaded.accuracy_by_searches == fresh.accuracy_by_searches
    assert "| overall |" in (run_dir / "eval" / "abl" / "all" / "results.md").read_text()


def test_report_for_a_training_run(run_dir: Path):
    html_path = build_report(run_dir, n_trajectories=4)
    assert html_path == run_dir / "report" / "report.html"
    page = html_path.read_text()
    pngs = sorted((run_dir / "report").glob("*.png"))
    assert {p.name for p in pngs} >= {"training_curves.png", "eval0_tool_calls.png", "eval0_acc_by_searches.png"}
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 50
            assert len(image.convert("L").getcolors()) > 2  # something is drawn on it
    assert page.count("data:image/png;base64,") == len(pngs)  # self-contained
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Tool ablation" in page and page.count('class="traj ') == 4
    assert "Training trajectories: accuracy against searches" in page
    for kind in ("think", "search", "code", "response", "answer"):
        assert f'class="seg {kind}"' in page


def test_report_for_an_eval_dir(run_dir: Path, tmp_path: Path):
    out = build_report(run_dir / "eval" / "abl" / "all", out_dir=tmp_path / "rep")
    page = out.read_text()
    assert "Training" not in page and "Evaluation: ." in page and "Sampled trajectories" in page


def test_empty_dir_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nothing to report"):
        build_report(tmp_path)


def test_curve_panels_follow_the_trainer_keys():
    row = {
        "step": 1.0,
        "epoch": 0.0,
        "reward/mean": 0.1,
        "reward/std": 0.2,
        "reward/acc": 0.3,
        "reward/format_error_rate": 0.5,
        "tools/calls_per_traj": 1.0,
        "tools/search_per_traj": 0.5,
        "tools/failure_rate": 0.0,
        "response/model_tokens": 40.0,
        "response/truncated_rate": 0.0,
        "sampling/filtered_frac": 0.25,
        "actor/loss": 0.01,
        "actor/loss_tokens": 900.0,
        "time/step_s": 3.0,
    }
    assert curve_panels([row]) == {
        "reward": ["reward/mean", "reward/std"],
        "accuracy": ["reward/acc"],
        "format-error rate": ["reward/format_error_rate"],
        "tool calls per trajectory": ["tools/calls_per_traj", "tools/search_per_traj"],
        "tool failure rate": ["tools/failure_rate"],
        "response length (tokens)": ["response/model_tokens"],
        "filtered-group fraction": ["sampling/filtered_frac"],
        "loss": ["actor/loss"],
    }
    assert curve_panels([{"step": 1, "name": "x"}]) == {}


def test_sampling_shows_right_and_wrong_answers():
    rows = [(i, make_traj(i, acc=i < 2, searches=0)) for i in range(10)]
    picked = sample_rows(rows, 6)
    assert sum(t.scored.acc for _, t in picked) == 2 and len(picked) == 6


# -- headless Chromium over the DevTools protocol ---------------------------------------------------------


class Browser:
    """Headless Chromium driven over CDP: collects console messages, exceptions and network errors."""

    def __init__(self, user_data_dir: Path) -> None:
        import websocket

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={user_data_dir}",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
        if port is None:
            self.close()
            pytest.fail("chromium did not start its DevTools endpoint")
        threading_drain(self.proc.stderr)
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60)
        self._id = 0
        self.events: list[dict] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=1200, height=1400, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def open(self, url: str) -> list[str]:
        """Navigate, wait for the load event and a moment more; returns the problems the page reported."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads(self.ws.recv()))
        self.call("Runtime.evaluate", expression="1")  # flush events queued before the load event
        problems = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                problems.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                problems.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                problems.append(f"log {p['entry']['level']}: {p['entry']['text']}")
        return problems

    def screenshot(self) -> Image.Image:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data)))

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def threading_drain(stream) -> None:
    """Keep reading chromium's stderr so a full pipe never blocks it."""
    import threading

    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian `chromium` package (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path):
    report = build_report(run_dir, n_trajectories=6)
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("bad")</script></body></html>'
    )
    browser = Browser(tmp_path / "chromium-profile")
    try:
        # The detector must see the problems of a broken page, or its silence on the report means nothing.
        problems = browser.open(broken.as_uri())
        assert any("console.error" in p for p in problems) and any("ERR_FILE_NOT_FOUND" in p for p in problems), (
            problems
        )
        assert browser.open(report.as_uri()) == []
        shot = browser.screenshot().convert("RGB")
    finally:
        browser.close()
    assert shot.size == (1200, 1400)
    colours = shot.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, tables and plots, not a blank page
    shot.save(tmp_path / "report.png")
