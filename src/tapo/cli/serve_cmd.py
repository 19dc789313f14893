"""``tapo serve``: tool servers, so tools can run on other machines than the trainer."""

from __future__ import annotations

import typer

from tapo.cli.common import config_or_exit, fail
from tapo.cli.preflight import check_isolation, preflight
from tapo.config.schema import SandboxCodeConfig

app = typer.Typer(help="Run tool servers (HTTP, loopback by default).", no_args_is_help=True)


@app.command("code")
def code(
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. tools.code.timeout_s=5"),
    config: list[str] = typer.Option(None, "--config", "-c", help="YAML file(s), merged left to right"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
) -> None:
    """Serve the Python sandbox: POST /run {"code"} → {"stdout", "finished", "time"}; GET /health."""
    from tapo.tools.code.server import serve

    cfg = config_or_exit(config, overrides)
    if not isinstance(cfg.tools.code, SandboxCodeConfig):  # a server that forwards to another is not what was meant
        raise fail(f"tapo serve code runs the sandbox: tools.code.kind={cfg.tools.code.kind}, expected sandbox")
    with preflight():
        check_isolation(cfg, ["code"])
    serve(cfg.tools.code, host=host, port=port)


@app.command("search")
def search(
    index: str = typer.Option(..., "--index", help="index directory built by `tapo index build`"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8001, min=1, max=65535, help="TCP port"),
    topk: int = typer.Option(3, min=1, max=100, help="passages per query when a request gives no topk"),
    delay_s: float = typer.Option(
        0.0, "--delay-s", min=0.0, help="hold every request this long first (a slow retriever, for benchmarks)"
    ),
) -> None:
    """Serve a local index with Search-R1's API: POST /retrieve {"queries", "topk", "return_scores"}; GET /health."""
    from tapo.tools.search.server import serve

    try:
        serve(index, host=host, port=port, topk=topk, delay_s=delay_s)
    except (ValueError, OSError, ImportError) as error:
        raise fail(str(error)) from None
