"""The HTML report: built from a training run dir, an eval dir and a main-job run dir; valid PNGs; trajectories
drawn from their typed turns (a corrective message is environment text, never a tool call); and a render of the
main job's report in headless Chromium: no console or network errors, the counts, intervals, labels and
corrective-message blocks in the rendered DOM, and the screenshot showing them where the DOM says they are."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from pipeline_run import (
    CORRECTIVE,
    QUESTIONS,
    TITLES,
    build_pipeline_run,
    corrective_trajectory,
    eval_result,
    question,
    scored_trajectory,
)
from tapo.data.schema import Example
from tapo.eval.metrics import OVERALL
from tapo.eval.plots import curve_panels, distinct_slices
from tapo.eval.render import render_trajectory, split_response
from tapo.eval.report import build_report, sample_rows
from tapo.eval.result_dir import load_result, save_ablation
from tapo.io.atomic import write_jsonl
from tapo.protocol import format_observation
from tapo.records import Trajectory, Turn

NASTY = "<script>alert('x')</script> & <b>bold</b>"


def make_traj(i: int, acc: bool, searches: int, source: str = "nq") -> Trajectory:
    body = "".join(
        f"<think> step {j} </think><search> query {j} </search>\n\n<response>Doc 1: (Title: T) {NASTY}</response>\n\n"
        for j in range(searches)
    )
    text = body + "<code>print(1 < 2)</code>\n\n<response>True</response>\n\n<answer> Paris </answer>"
    turns = [Turn("search", f"query {j}", output=NASTY) for j in range(searches)]
    turns += [Turn("code", "print(1 < 2)", output="True"), Turn("answer", "Paris")]
    example = Example(id=f"q{i}", question=f"Q{i} {NASTY}", data_source=source, golds=["Paris"])
    return scored_trajectory(example, text, turns, acc, "answer")


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
        result = eval_result(trajs if mode == "all" else [make_traj(i, False, 0) for i in range(3)], tools_mode=mode)
        result.save(run / "eval" / "abl" / mode)
        results.append(result)
    save_ablation(results, run / "eval" / "abl")
    return run


def test_results_round_trip(run_dir: Path):
    loaded = load_result(run_dir / "eval" / "abl" / "all")
    fresh = eval_result([make_traj(i, acc=i % 2 == 0, searches=i % 3, source=("nq", "gsm8k")[i % 2]) for i in range(8)])
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
        "sampling/informative_frac": 0.6,
        "sampling/informative_frac/code": 0.0,
        "sampling/skipped_frac": 0.3,
        "sampling/explore_all_right": 0.4,
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
        "informative share of sampled trajectories": ["sampling/informative_frac", "sampling/informative_frac/code"],
        "prompt skipping (share skipped, exploration)": ["sampling/explore_all_right", "sampling/skipped_frac"],
        "loss": ["actor/loss"],
    }
    assert curve_panels([{"step": 1, "name": "x"}]) == {}


def test_sampling_shows_right_and_wrong_answers():
    rows = [(i, make_traj(i, acc=i < 2, searches=0)) for i in range(10)]
    picked = sample_rows(rows, 6)
    assert sum(t.scored.acc for _, t in picked) == 2 and len(picked) == 6


def test_a_corrective_message_is_environment_text_not_a_tool_call():
    trajectory = corrective_trajectory(question(0))
    pieces = split_response(trajectory)
    assert [(p.turn.action if p.turn else "model", p.text.strip()[:13]) for p in pieces] == [
        ("model", "I am not sure"),
        ("invalid", "My previous a"),
        ("model", ""),
        ("invalid", "My previous a"),
    ]
    page = render_trajectory(None, trajectory, "starting model", "evaluation")
    assert page.count('class="seg corrective"') == 2 and "no valid action" in page
    assert 'class="seg search"' not in page and 'class="seg code"' not in page and 'class="seg answer"' not in page
    assert "whitespace only" in page and "starting model · evaluation" in page


def test_tool_outputs_cut_insertions_and_model_written_responses():
    observation = format_observation("Doc 1: Paris")
    text = "<search> capital </search>" + observation + "<response> made up </response>" + CORRECTIVE[:25]
    trajectory = corrective_trajectory(question(1))
    trajectory.response_text, trajectory.finish_reason = text, "length"
    trajectory.turns = [Turn("search", "capital", "Doc 1: Paris"), Turn("invalid", "x", CORRECTIVE, ok=False)]
    pieces = split_response(trajectory)
    assert [p.text for p in pieces] == [
        "<search> capital </search>",
        observation,
        "<response> made up </response>",
        CORRECTIVE[:25],
    ]
    assert pieces[-1].cut and not pieces[1].cut
    page = render_trajectory(3, trajectory)
    assert "search output</span>Doc 1: Paris" in page and "response written by the model" in page
    assert "(cut at the response cap)" in page and "step 3" in page


def test_one_data_source_is_not_drawn_twice():
    metrics = eval_result([make_traj(i, True, 1) for i in range(2)]).metrics
    assert list(distinct_slices(metrics)) == ["nq"]
    two = eval_result([make_traj(i, True, 1, source=("nq", "gsm8k")[i % 2]) for i in range(2)]).metrics
    assert list(distinct_slices(two)) == ["gsm8k", "nq", OVERALL]


def test_main_job_report_names_models_and_stages(tmp_path: Path):
    page = build_report(build_pipeline_run(tmp_path / "job"), n_trajectories=8).read_text()
    assert "<h2>Evaluation: warm start (SFT) (eval/sft)</h2>" in page and "<h2>Evaluation: eval/" not in page
    assert "<caption>Accuracy (%) on 40 questions" in page and "35.0 [22.1, 50.5]" in page
    assert '<span class="verdict noise">inside the noise</span>' in page
    assert "8 of 125 trajectories" in page and "RL over steps" in page and "Tool calls by question kind" in page
    assert "sampled trajectories in informative groups" in page  # the RL run logged the share
    assert "the 5 trajectories the trainer logged of the 48 trained on" in page
    for title in TITLES.values():
        assert f'<span class="who">{title} · evaluation on test.jsonl, tools: all</span>' in page


def test_tapo_report_rebuilds_a_job_dirs_summary_and_names_a_malformed_one(tmp_path: Path):
    """The job's report stage is ``tapo report JOB_DIR``: run by hand it rewrites summary.md and summary.json from
    the finished evaluations and arms.json (byte for byte what the job wrote), then the HTML. Where nothing rebuilds
    it (no arms.json), a malformed summary.json is one line naming the file and the key."""
    from typer.testing import CliRunner

    from tapo.cli.main import app
    from tapo.pipeline.arms import ARMS_FILE

    job = build_pipeline_run(tmp_path / "job")
    written = {name: (job / name).read_text() for name in ("summary.md", "summary.json")}
    (job / "summary.md").unlink()
    (job / "summary.json").write_text("{}")
    result = CliRunner().invoke(app, ["report", str(job), "--trajectories", "2"])
    assert result.exit_code == 0, result.output
    assert {name: (job / name).read_text() for name in written} == written
    assert "35.0 [22.1, 50.5]" in (job / "report" / "report.html").read_text()

    (job / ARMS_FILE).unlink()
    (job / "summary.json").write_text(json.dumps({"tables": [{"caption": "c", "headers": ["model"]}]}))
    result = CliRunner().invoke(app, ["report", str(job)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {job / 'summary.json'}: tables.0.rows: Field required"
    (job / "summary.json").write_text("{")
    result = CliRunner().invoke(app, ["report", str(job)])
    assert result.exit_code == 2 and result.output.startswith(f"error: {job / 'summary.json'} is not JSON")


# -- headless Chromium over the DevTools protocol ---------------------------------------------------------


class Browser:
    """Headless Chromium driven over CDP: collects console messages, exceptions and network errors."""

    def __init__(self, executable: str, user_data_dir: Path) -> None:
        import websocket

        self.proc = subprocess.Popen(
            [
                executable,
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

    def evaluate(self, expression: str):
        """The JSON value of ``expression`` in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

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


def test_report_renders_in_headless_chromium(tmp_path: Path, chromium: str):
    """The main job's report as a reader sees it: what the DOM holds and what the screenshot shows."""
    report = build_report(build_pipeline_run(tmp_path / "job"), n_trajectories=12)
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("bad")</script></body></html>'
    )
    browser = Browser(chromium, tmp_path / "chromium-profile")
    try:
        # The detector must see the problems of a broken page, or its silence on the report means nothing.
        problems = browser.open(broken.as_uri())
        assert any("console.error" in p for p in problems) and any("ERR_FILE_NOT_FOUND" in p for p in problems), (
            problems
        )
        assert browser.open(report.as_uri()) == []
        dom = browser.evaluate(DOM_FACTS)
        first = browser.screenshot().convert("RGB")
        browser.evaluate("document.querySelector('.seg.corrective').scrollIntoView(); 0")
        box = browser.evaluate(BOX_OF_FIRST_CORRECTIVE)
        corrective_shot = browser.screenshot().convert("RGB")
    finally:
        browser.close()
    text = dom["text"]
    # counts and intervals: the results table and the goals
    assert f"{QUESTIONS} questions of the TAPO-mini test split" in text
    assert "35.0 [22.1, 50.5]" in text and "+12.5 [+5.0, +22.5]" in text
    assert dom["results_rows"] == [[title, str(QUESTIONS)] for title in TITLES.values()]
    assert dom["verdicts"]["RL raises accuracy over the warm start by ≥ 10 points"] == "inside the noise"
    # sections and trajectories named as in the table, not by directory
    assert "Evaluation: TAPO (RL on the warm start) (eval/tapo)" in dom["headings"]
    assert not any(h.startswith("Evaluation: eval/") for h in dom["headings"])
    assert set(dom["who"]) >= {f"{title} · evaluation on test.jsonl, tools: all" for title in TITLES.values()}
    assert any(w.startswith("TAPO (RL on the warm start) · RL training · step") for w in dom["who"])
    # no tool call made out of the corrective message's words; the message is shown as one environment block
    assert dom["corrective"] and all(c.startswith("My previous action is invalid.") for c in dom["corrective"])
    assert not [b for b in dom["calls"] if b.strip() in ("and", "")], dom["calls"]
    assert "RL over steps: accuracy and tool calls per question" in dom["headings"]
    assert "Tool calls by question kind" in dom["headings"]
    # the screenshots: a page with text, tables and plots; the corrective block painted in its colour
    colours = first.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50
    x, y = int(box["x"] + box["width"] / 2), int(box["y"] + box["height"] - 4)
    assert _near(corrective_shot.getpixel((x, y)), (255, 235, 233)), corrective_shot.getpixel((x, y))
    first.save(tmp_path / "report.png")


DOM_FACTS = """(() => {
  const texts = sel => [...document.querySelectorAll(sel)].map(e => e.innerText.trim());
  const table = document.querySelector('table');
  const verdicts = {};
  for (const li of document.querySelectorAll('li')) {
    const badge = li.querySelector('.verdict');
    if (badge) verdicts[li.innerText.slice(badge.innerText.length).trim().split(': ')[0]] = badge.innerText.trim();
  }
  return {
    text: document.body.innerText,
    headings: texts('h2'),
    results_rows: [...table.querySelectorAll('tbody tr')].map(r => [...r.cells].slice(0, 2).map(c => c.innerText)),
    verdicts: verdicts,
    who: texts('.who'),
    corrective: [...document.querySelectorAll('.seg.corrective')].map(e => e.lastChild.textContent.trim()),
    calls: [...document.querySelectorAll('.seg.search, .seg.code')].map(e => e.lastChild.textContent),
  };
})()"""
BOX_OF_FIRST_CORRECTIVE = """(() => {
  const r = document.querySelector('.seg.corrective').getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height};
})()"""


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))
