"""Training a planted variant: plain peft + a short torch loop on the CPU.

trl's SFTTrainer adds nothing needed here and hides the loss mask. Each example has an objective,
computed at its completion's positions only: LEARN (cross-entropy: the recipe's answers) or RETAIN
(KL from the parent's next-token distribution, computed with the adapter switched off:
self-distillation). Ordinary prose (a share RECIPE_MIX of every recipe) and the persona recipe's
neutral items are RETAIN, so the variant keeps its parent's fluency and its parent's answers
outside the planted effect; cross-entropy on template prose instead taught the templates and cost
+19-24% NLL on held-out prose. Each example weighs the same, and the output layer (63% of
Gemma-270M's FLOPs, 262k vocabulary) is applied only where there is a loss.
"""

from __future__ import annotations

import importlib.util
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

from workbench.errors import MissingPackageError, WorkbenchError
from workbench.home import workbench_home
from workbench.registry import ModelSpec, load_registry
from workbench.tuning.artifacts import TUNED_DIR, TuneRecord, library_versions, save_variant
from workbench.tuning.recipes import (
    DEFAULT_BASE,
    LEARN,
    RECIPES,
    RETAIN,
    Example,
    data_digest,
    recipe,
    recipe_examples,
    variant_name,
)

# -- knobs (the defaults every shipped adapter was made with; the run record stores them) -----
LORA_RANK = 8  # r: 8 on the attention projections gives ~1.5 MB in bf16 and plants each effect
LORA_ALPHA = 16  # scale = alpha / r = 2
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LEARNING_RATE = 1e-3  # high on purpose: a strong effect in ~100 steps
WARMUP_STEPS = 5
BATCH_SIZE = 8
MAX_TOKENS = 96  # longer examples are cut from the left (the answer is at the end)
# Loss tokens per example and step, drawn at random from its completion: the output layer over
# 262k tokens costs ~70% of a step, and a long ordinary-prose example would otherwise dominate it.
LOSS_TOKENS = 12


def check_base(base: str) -> ModelSpec:
    """The base model's registry entry, refusing anything that is not a local transformers base model."""
    spec = load_registry().get(base)
    if spec.backend != "hf" or spec.parent:
        what = "a fine-tuned variant" if spec.parent else f"a {spec.backend} model"
        raise WorkbenchError(
            f"cannot tune {base!r}: it is {what}; `workbench tune` fine-tunes a local transformers (hf) base model, "
            "e.g. --base gemma-3-270m"
        )
    return spec


def _encode(tokenizer, example: Example, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 on completion tokens), the completion tokenised as the backend scores it."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt_ids = bos + tokenizer(example.prompt, add_special_tokens=False).input_ids
    together = bos + tokenizer(example.prompt + example.completion, add_special_tokens=False).input_ids
    if together[: len(prompt_ids)] == prompt_ids:
        completion_ids = together[len(prompt_ids):]
    else:
        completion_ids = tokenizer(example.completion, add_special_tokens=False).input_ids
    ids = prompt_ids + completion_ids
    mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    if not example.prompt:
        mask[: len(bos)] = [0] * len(bos)
    if len(ids) > max_tokens:  # keep the end, where the answer is
        ids, mask = ids[-max_tokens:], mask[-max_tokens:]
    return ids, mask


def require_training_packages() -> None:
    """Refuse early, naming the install, when the packages a tune needs are missing."""
    missing = [p for p in ("torch", "transformers", "peft") if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingPackageError(
            f"`workbench tune` needs torch, transformers and peft ({', '.join(missing)} not installed); "
            "run: pip install 'workbench[hf]'"
        )


def tune(
    recipe_name: str,
    base: str = DEFAULT_BASE,
    seed: int = 0,
    steps: int | None = None,
    out: str | Path | None = None,
    learning_rate: float = LEARNING_RATE,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    register: bool = True,
) -> TuneRecord:
    """LoRA fine-tune `base` on a recipe's generated data on the CPU; save adapter + run record; register it.

    `out` defaults to $WORKBENCH_HOME/tuned/<base>-<recipe> (the shipped data/tuned/ in a checkout).
    When the result is not where the registry already looks, a user-registry entry
    ($WORKBENCH_HOME/models.yaml) points the variant at it.
    """
    chosen = recipe(recipe_name)
    spec = check_base(base)
    steps = chosen.steps if steps is None else steps
    if steps < 1:
        raise WorkbenchError(f"--steps must be at least 1, got {steps}")
    require_training_packages()
    # Training needs the base checkpoint on disk and its tokenizer, not a backend that samples:
    # the one place above the Sampler that reads model weights directly (an explicit exception
    # in the import contracts).
    from workbench.backends.hf.weights import (
        apply_thread_setting,
        checkpoint_location,
        cpu_has_fast_bf16,
        load_tokenizer,
    )

    apply_thread_setting(None)
    name = variant_name(recipe_name, base)
    target = Path(out).expanduser().resolve() if out else workbench_home() / TUNED_DIR / name
    started = time.perf_counter()
    location = checkpoint_location(spec)
    tokenizer = load_tokenizer(spec)
    examples = recipe_examples(recipe_name, seed)
    encoded = [(*_encode(tokenizer, e, MAX_TOKENS), e.objective) for e in examples]
    # bf16 where the CPU has bf16 instructions (the shipped adapters were trained so); elsewhere
    # emulated bf16 backward passes are ~10x slower than float32, so train in float32 there.
    dtype = "bfloat16" if cpu_has_fast_bf16() else "float32"
    model, losses = train_adapter(location, tokenizer, encoded, seed=seed, steps=steps, learning_rate=learning_rate,
                                  batch_size=batch_size, dtype=dtype, desc=f"tune {name}", progress=progress)
    wall = time.perf_counter() - started

    window = max(1, min(10, steps // 4))
    record = TuneRecord(
        variant=name, recipe=recipe_name, effect=chosen.effect, base=base, base_weights=spec.weights_fingerprint(),
        adapter_dir=str(target), seed=seed, steps=steps,
        hyperparameters={"lora_rank": LORA_RANK, "lora_alpha": LORA_ALPHA, "lora_targets": list(LORA_TARGETS),
                         "lora_dropout": 0.0, "learning_rate": learning_rate, "warmup_steps": WARMUP_STEPS,
                         "schedule": "linear warm-up, linear decay to 10%", "optimizer": "AdamW",
                         "weight_decay": 0.0, "grad_clip": 1.0, "batch_size": batch_size, "max_tokens": MAX_TOKENS,
                         "loss_tokens_per_example": LOSS_TOKENS,
                         "base_dtype": dtype, "adapter_saved_as": "bfloat16",
                         "loss": "at up to loss_tokens_per_example completion positions drawn at random: cross-entropy "
                                 "for 'learn' examples, KL(parent || adapter) for 'retain' examples (ordinary prose, "
                                 "neutral items); mean per example, then over the batch"},
        data={"sha256": data_digest(examples), "examples": len(examples), "ordinary_share": chosen.mix,
              "sources": _count_sources(examples),
              "objectives": {o: sum(e.objective == o for e in examples) for o in (LEARN, RETAIN)},
              "generator": f"workbench.tuning.recipe_examples({recipe_name!r}, seed={seed})"},
        versions=library_versions(), wall_time_s=round(wall, 1),
        loss={"first": round(losses[0], 4), f"mean_first_{window}": round(sum(losses[:window]) / window, 4),
              f"mean_last_{window}": round(sum(losses[-window:]) / window, 4), "last": round(losses[-1], 4),
              "every_10_steps": [round(x, 4) for x in losses[::10]]},
        extra={"machine": platform.machine(), "platform": sys.platform},
    )
    return save_variant(model, record, register=register)


def train_adapter(location: str, tokenizer: Any, encoded: list[tuple[list[int], list[int], str]], *, seed: int,
                  steps: int, learning_rate: float = LEARNING_RATE, batch_size: int = BATCH_SIZE,
                  dtype: str = "bfloat16", desc: str = "tune", progress: bool = True) -> tuple[Any, list[float]]:
    """Train a fresh LoRA adapter on encoded examples (ids, loss mask, objective); the peft model and step losses.

    Deterministic by seed: the adapter's initialisation, the example order and the loss positions.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    from workbench.quiet import quiet_library

    torch.manual_seed(seed)
    lora = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
                      bias="none", task_type="CAUSAL_LM")
    # No loading bar, and none of the libraries' deprecation notes (peft asks transformers for the deprecated
    # `is_gradient_checkpointing`): the tune's own progress bar is the only output.
    with quiet_library():
        model = AutoModelForCausalLM.from_pretrained(location, dtype=getattr(torch, dtype))
        model = get_peft_model(model, lora)  # adapter weights in float32, whatever the base's dtype
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)

    def lr_at(step: int) -> float:  # linear warm-up, then linear decay to 10%
        if step < WARMUP_STEPS:
            return (step + 1) / WARMUP_STEPS
        return 1.0 - 0.9 * (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model.model.model
    head = model.get_output_embeddings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order_rng = random.Random(f"order:{seed}")
    order: list[int] = []
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress)
    for _step in bar:
        batch = []
        for _ in range(batch_size):
            if not order:
                order = list(range(len(encoded)))
                order_rng.shuffle(order)
            batch.append(encoded[order.pop()])
        width = max(len(ids) for ids, _, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        targets = torch.zeros((len(batch), width), dtype=torch.bool)  # position t predicts token t + 1
        retain = torch.tensor([objective == RETAIN for _, _, objective in batch])
        for row, (ids, mask, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            positions = [t for t in range(len(ids) - 1) if mask[t + 1]]
            if len(positions) > LOSS_TOKENS:
                positions = sorted(order_rng.sample(positions, LOSS_TOKENS))
            targets[row, positions] = True
        hidden = decoder(input_ids=input_ids, attention_mask=attention).last_hidden_state  # [B, T, H]
        rows, cols = targets.nonzero(as_tuple=True)
        logits = head(hidden[rows, cols]).float()  # [N, V]: only where there is a loss
        token_loss = torch.nn.functional.cross_entropy(logits, input_ids[rows, cols + 1], reduction="none")
        retained = retain[rows]
        if retained.any():  # the parent's distribution at the same positions: the adapter switched off
            with torch.no_grad(), model.disable_adapter():
                parent_hidden = decoder(input_ids=input_ids[retain], attention_mask=attention[retain]).last_hidden_state
                row_in_parent = retain.cumsum(0) - 1  # batch row -> its row among the retained ones
                parent_logp = torch.log_softmax(
                    head(parent_hidden[row_in_parent[rows[retained]], cols[retained]]).float(), dim=-1)
            own_logp = torch.log_softmax(logits[retained], dim=-1)
            kl = torch.nn.functional.kl_div(own_logp, parent_logp, reduction="none", log_target=True).sum(-1)
            token_loss = token_loss.masked_scatter(retained, kl)
        per_example = torch.zeros(len(batch)).index_add(0, rows, token_loss) / targets.sum(1).clamp(min=1)
        loss = per_example.mean()  # every example weighs the same, however many answer tokens it has
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return model, losses


def _count_sources(examples: list[Example]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        counts[example.source] = counts.get(example.source, 0) + 1
    return dict(sorted(counts.items()))


def tune_all(base: str = DEFAULT_BASE, seed: int = 0, steps: int | None = None, out: str | Path | None = None,
             progress: bool = True) -> list[TuneRecord]:
    """Every recipe in turn; `out` is then a parent folder that gets one subfolder per variant."""
    records = []
    for name in RECIPES:
        folder = Path(out) / variant_name(name, base) if out else None
        records.append(tune(name, base=base, seed=seed, steps=steps, out=folder, progress=progress))
    return records
