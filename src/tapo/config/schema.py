"""The configuration tree. Every section forbids unknown keys so typos fail before any work starts.

Defaults follow the TAPO paper's setup (spec §4) where the paper fixes a value; CPU-friendly
sizes (prompts per step, lengths) are set in ``configs/*.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = Field("tapo-run", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    output_dir: str = "runs"
    seed: int = Field(0, ge=0)
    torch_threads: int = Field(0, ge=0, description="0 = use all cores this process may run on")


class LoraConfig(Section):
    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class ModelConfig(Section):
    name: str = Field("smollm2-135m-instruct", min_length=1, description="store name, checkpoint dir or hub id")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False
    trainable_layers: int | None = Field(
        None, ge=1, description="train only the top N decoder layers and the final norm (CPU budgets); None = all"
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)


class DataConfig(Section):
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    template: str = Field("base", min_length=1)
    max_prompt_tokens: int = Field(2048, ge=16)
    shuffle: bool = True
    strict: bool = Field(False, description="raise on the first bad or repaired row instead of dropping/fixing it")
    source_dir: str | None = Field(None, description="local copies of the hub datasets: <dir>/<key>/<split>.jsonl")
    mini_seed: int = Field(0, ge=0)
    mini_train: int = Field(2000, ge=0, le=1_000_000)
    mini_validation: int = Field(200, ge=0, le=100_000)
    mini_test: int = Field(300, ge=0, le=100_000)


class SearchCacheConfig(Section):
    enabled: bool = True
    path: str | None = Field(None, description="sqlite file; None = $TAPO_HOME/cache/search.sqlite")
    ttl_s: float = Field(7 * 24 * 3600, gt=0)
    fuzzy_threshold: float = Field(0.9, ge=0.0, le=1.0)
    trigram_prefilter: float = Field(0.3, ge=0.0, le=1.0)


class SearchConfig(Section):
    backend: Literal["bm25", "dense", "remote", "serper"] = "bm25"
    index_dir: str | None = None
    url: str | None = Field(None, description="Search-R1 /retrieve server or Serper-style endpoint")
    api_key_env: str = "SERPER_API_KEY"
    topk: int = Field(3, ge=1, le=50)
    timeout_s: float = Field(10.0, gt=0)
    remote_max_batch: int = Field(32, ge=1, le=512, description="remote: queries sent together in one /retrieve")
    remote_batch_window_ms: float = Field(5.0, ge=0.0, le=1000.0, description="remote: wait this long to fill a batch")
    cache: SearchCacheConfig = Field(default_factory=SearchCacheConfig)


class CodeConfig(Section):
    backend: Literal["sandbox", "remote"] = "sandbox"
    url: str | None = None
    timeout_s: float = Field(2.0, gt=0)
    require_isolation: bool = False
    memory_mb: int = Field(1024, ge=64)
    cpu_seconds: int = Field(5, ge=1)
    max_processes: int = Field(64, ge=1)
    max_file_mb: int = Field(16, ge=1)
    max_open_files: int = Field(64, ge=8)
    tmpfs_mb: int = Field(64, ge=1, le=65536, description="size cap of the sandbox's private /tmp working dir")
    max_parallel: int = Field(8, ge=1, le=1024, description="sandboxes running at once in one process")


class ToolsConfig(Section):
    enabled: list[Literal["search", "code"]] = Field(default_factory=lambda: ["search", "code"])
    max_concurrency: int = Field(32, ge=1)
    call_timeout_s: float = Field(30.0, gt=0, description="outer time-out for any one tool call")
    search: SearchConfig = Field(default_factory=SearchConfig)
    code: CodeConfig = Field(default_factory=CodeConfig)


class RolloutConfig(Section):
    engine: Literal["hf", "vllm"] = "hf"
    max_turns: int = Field(4, ge=0)
    max_obs_tokens: int = Field(2048, ge=1)
    max_response_tokens: int = Field(2048, ge=8)
    max_new_tokens_per_turn: int = Field(2048, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, description="sequences generated together by the hf engine")
    vllm_gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)
    vllm_server_url: str | None = Field(
        None,
        description="engine=vllm only: generate on this `vllm serve` server (http://host:port) instead of in-process",
    )
    vllm_server_weights_dir: str | None = Field(
        None, description="where the trainer writes the policy for the vLLM server to reload (both must see it)"
    )

    @model_validator(mode="after")
    def _server_needs_vllm(self) -> RolloutConfig:
        if self.vllm_server_url and self.engine != "vllm":
            raise ValueError("rollout.vllm_server_url needs rollout.engine=vllm")
        return self


class OverlongConfig(Section):
    enabled: bool = True
    buffer: int = Field(1024, ge=1, le=1_000_000, description="tokens before max_response_tokens where it starts")
    factor: float = Field(1.0, ge=0.0, le=100.0)


class RewardConfig(Section):
    default_scorer: Literal["exact", "nq", "calculator", "complex", "em", "f1", "math", "auto"] = Field(
        "exact", description="scorer for rows with an empty data_source (an unknown source is an error)"
    )
    acc_threshold: float = Field(0.9, ge=0.0, le=1.0)
    format_penalty: float = Field(-1.0, ge=-10.0, le=0.0, description="score of a response with a broken format")
    math_timeout_s: float = Field(5.0, gt=0, le=300, description="hard limit per math-verify comparison")
    math_memory_mb: int = Field(2048, ge=256, le=1_048_576, description="address-space cap of the math-verify worker")
    custom_scorers: dict[str, str] = Field(
        default_factory=dict, description="data_source -> built-in scorer name or 'module:function'"
    )
    overlong: OverlongConfig = Field(default_factory=OverlongConfig)


class TrainerConfig(Section):
    lr: float = Field(1e-6, gt=0)
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    prompts_per_step: int = Field(64, ge=1)
    group_size: int = Field(4, ge=2, description="trajectories per prompt (n)")
    mini_batch_size: int = Field(16, ge=1, description="trajectories per optimizer step")
    micro_batch_size: int = Field(4, ge=1, description="trajectories per forward/backward")
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)
    clip_low: float = Field(0.2, ge=0)
    clip_high: float = Field(0.28, ge=0)
    dual_clip: float = Field(10.0, gt=1.0)
    kl_coef: float = Field(0.0, ge=0)
    max_num_gen_batches: int = Field(10, ge=1)
    filter_groups: bool = True
    constant_group_tol: float = Field(1e-6, ge=0)
    mask_tool_tokens: bool = True
    save_every: int = Field(10, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_trajectories: int = Field(8, ge=0, description="trajectories sampled per step into trajectories.jsonl")
    bf16: bool = False
    tracker: Literal["none", "tensorboard", "wandb"] = "none"

    @model_validator(mode="after")
    def _batch_sizes_fit(self) -> TrainerConfig:
        if self.mini_batch_size % self.micro_batch_size:
            raise ValueError(
                f"trainer.mini_batch_size={self.mini_batch_size} must be a multiple of "
                f"trainer.micro_batch_size={self.micro_batch_size}"
            )
        return self


class SftConfig(Section):
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1)
    max_examples: int | None = Field(None, ge=1)
    warmup_steps: int = Field(10, ge=0)


class EvalConfig(Section):
    samples: int = Field(1, ge=1)
    greedy: bool = True
    limit: int | None = Field(None, ge=1)
    tools: Literal["all", "search", "code", "none"] = "all"
    seed: int = Field(0, ge=0, description="sampling seed when samples are drawn at temperature > 0")
    openai_api: Literal["completions", "chat"] = Field("completions", description="endpoint used for openai:URL#M")
    openai_api_key_env: str = Field("OPENAI_API_KEY", min_length=1, description="env var holding the API key")
    openai_timeout_s: float = Field(120.0, gt=0, le=3600)
    openai_max_retries: int = Field(3, ge=0, le=20)
    openai_max_concurrency: int = Field(8, ge=1, le=1024, description="requests in flight at once")
    report_trajectories: int = Field(12, ge=0, le=1000, description="sampled trajectories shown in the report")
    benchmark_dir: str | None = Field(
        None, description="local benchmark copies (<dir>/<set>/<split>.jsonl); None = hub"
    )


class TapoConfig(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
