"""The model card of an export folder (its README.md), written from the export's config.json: what the head is,
its files, how to load it, its architecture, how it was trained, its evaluation numbers and its limitations.

Every section is a list of Markdown lines that starts with its ``## `` heading (the first: the front matter and
the title) and ends with a blank line; :func:`model_card` joins them in order."""

from __future__ import annotations

import json
from typing import Any

from vaportok_rl.judge import format_table
from vaportok_rl.tokenizer.head import CARD_FILE, CONFIG_FILE, TORCHSCRIPT_FILE, WEIGHTS_FILE
from vaportok_rl.torchscript import TORCHSCRIPT_TOLERANCE

GRPO_SETTINGS = (
    "group_size",
    "num_iterations",
    "beta",
    "epsilon_low",
    "epsilon_high",
    "loss_type",
    "scale_rewards",
    "reward_aggregation",
)
TRAINING_SETTINGS = (
    ("grpo", GRPO_SETTINGS),
    ("rollout", ("videos_per_step", "clips_per_video", "mode")),
    ("data", ("source", "split")),
    ("optim", ("lr", "schedule")),
)
"""The training settings the card lists, by config section."""

LIMITATIONS = (
    "## Limitations",
    "",
    "- Tied to one frozen tokenizer (see the fingerprint above); K and D are fixed by its architecture.",
    "- The rewards are proxies (MSE, AR-prior accuracy, token counts, ...) measured on the training data "
    "source above; allocations may not transfer to very different footage.",
    "",
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _flat_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping, keyed 'a/b/c'."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flat_numbers(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(data, int | float) and not isinstance(data, bool) and data is not None:
        out[prefix] = data
    return out


def _eval_report_table(report: dict) -> str | None:
    """The Markdown table of a ``vaportok-rl eval`` report (its eval.json), or None for any other JSON."""
    if not str(report.get("schema", "")).startswith("vaportok-eval/"):
        return None
    try:
        return format_table(report)
    except Exception:  # another schema version, or a report without the at-budget section: fall back to numbers
        return None


def model_card(config: dict, name: str = "taildrop-head") -> str:
    """The README.md of an export folder, from its config.json."""
    sections = (
        _introduction(config, name),
        _files_section(config),
        _usage_section(config, name),
        _architecture_section(config),
        _training_section(config),
        _evaluation_section(config),
        LIMITATIONS,
    )
    return "\n".join(line for section in sections for line in section)


def _introduction(config: dict, name: str) -> list[str]:
    """Front matter, title (how the head was fitted) and what a taildrop head is; the tokenizer it belongs to."""
    t = config.get("training") or {}
    enumerated = (t.get("grpo") or {}).get("groups") == "enumerated"
    sampled_after = ((t.get("grpo") or {}).get("path_phase") or {}).get("steps", 0) if enumerated else 0
    fp = config["tokenizer_fingerprint"]
    tokenizer_spec = t.get("tokenizer")
    return [
        "---",
        "library_name: vaportok-rl",
        "tags: [vaportok-rl, taildrop, adaptive-tokenization, video-tokenizer, grpo]",
        "---",
        "",
        f"# {name}: "
        + (
            "an oracle-distilled taildrop head"
            if "distill" in t
            else "a taildrop head fitted by enumerated groups"
            if enumerated
            else "a GRPO-tuned taildrop head"
        ),
        "",
        "A *taildrop head* decides how many of a clip's K ordered latent tokens a frozen adaptive 1D video tokenizer "
        "keeps. It reads the clip's quantized latents `[N, K, D]` and returns logits `[N, K]`: index `j` scores "
        "keeping `k = j + 1` tokens, and `softmax(logits)` is the distribution P(k) (the temperature is already "
        "applied). "
        + (
            "It was fitted by `vaportok-rl distill` to the per-clip PSNR oracle's choices at a price per token "
            f"(distill settings: {t['distill']}); the tokenizer itself stayed frozen."
            if "distill" in t
            else "It was fitted by vaportok-rl with enumerated groups (`grpo.groups: enumerated`): every clip of a "
            "training pool scored by the rewards listed below at a grid of keep counts, and the head fitted to "
            "each clip's closed-form optimum of GRPO's objective"
            + (
                f", then tuned by {sampled_after} steps of sampled GRPO on every reward (those that score whole "
                "paths included) from the fitted head (`grpo.path_phase`)"
                if sampled_after
                else ""
            )
            + "; the tokenizer itself stayed frozen."
            if enumerated
            else "It was fine-tuned with GRPO by vaportok-rl (after VaporTok) on the rewards listed below; the "
            "tokenizer itself stayed frozen."
        ),
        "",
        f"It belongs to **one** tokenizer: the one whose frozen weights have the fingerprint `{fp}`"
        + (f" (training used tokenizer spec `{tokenizer_spec}`)" if tokenizer_spec else "")
        + ". Loading it onto another tokenizer is an error unless forced.",
        "",
    ]


def _files_section(config: dict) -> list[str]:
    lines = [
        "## Files",
        "",
        "| file | contents |",
        "| --- | --- |",
        f"| `{WEIGHTS_FILE}` | the head's weights (safetensors; no code, no pickle) |",
        f"| `{CONFIG_FILE}` | architecture, temperature, sampling mode, rewards, training summary, tokenizer "
        f"fingerprint, format version {config['format_version']} |",
        f"| `{CARD_FILE}` | this card |",
    ]
    if TORCHSCRIPT_FILE in config.get("files", []):
        lines.append(
            f"| `{TORCHSCRIPT_FILE}` | TorchScript trace of the head (checked against the eager head to "
            f"max abs diff {TORCHSCRIPT_TOLERANCE:g} at export) |"
        )
    return [*lines, ""]


def _usage_section(config: dict, name: str) -> list[str]:
    """How to load the head onto its tokenizer and choose keep counts (and the TorchScript file, if any)."""
    tokenizer_spec = (config.get("training") or {}).get("tokenizer")
    lines = [
        "## How to use",
        "",
        "```python",
        "import torch",
        "from vaportok_rl import TaildropHead, load_tokenizer",
        "",
        f"tokenizer = load_tokenizer({tokenizer_spec!r})"
        if tokenizer_spec and ":" not in str(tokenizer_spec)
        else "tokenizer = ...  # the FrozenTokenizer this head was tuned on",
        f'head = TaildropHead.from_pretrained("{name}", tokenizer=tokenizer)  # checks the fingerprint',
        "",
        "encoded = tokenizer.encode(clips)                # clips [N, C, T, H, W] in [0, 1]",
        "logits = head(encoded.latents)                   # [N, K]",
        "keep = logits.argmax(-1) + 1                     # deterministic: the most likely k per clip",
        "# or sample: keep = torch.distributions.Categorical(logits=logits).sample() + 1",
        "reconstructions = tokenizer.decode(encoded.latents, keep)",
        "```",
        "",
        "`from_pretrained` reads only safetensors and JSON. `force=True` loads onto a tokenizer with another "
        "fingerprint (with a warning); the head's input shape `[K, D]` must still match.",
    ]
    if TORCHSCRIPT_FILE in config.get("files", []):
        lines += [
            "",
            f'TorchScript (e.g. for libtorch): `torch.jit.load("{name}/{TORCHSCRIPT_FILE}")`. It does not go '
            "through Python's pickle (libtorch's own reader rebuilds only tensors and TorchScript types), but it "
            "runs the TorchScript program stored in the file: load it only from sources you trust.",
        ]
    return [*lines, ""]


def _architecture_section(config: dict) -> list[str]:
    return [
        "## Architecture",
        "",
        "| field | value |",
        "| --- | --- |",
        *[f"| {k} | {_fmt(v)} |" for k, v in config["head"].items()],
        f"| sampling mode in training | {_fmt(config.get('sampling_mode'))} |",
        "",
    ]


def _training_section(config: dict) -> list[str]:
    """The run's settings (:data:`TRAINING_SETTINGS` that were recorded) and its rewards."""
    t = config.get("training") or {}
    lines = ["## Training", ""]
    rows = [(k, t[k]) for k in ("tokenizer", "seed", "steps", "steps_done", "seconds") if t.get(k) is not None]
    for group, keys in TRAINING_SETTINGS:
        for k in keys:
            if (t.get(group) or {}).get(k) is not None:
                rows.append((f"{group}.{k}", t[group][k]))
    if rows:
        lines += ["| setting | value |", "| --- | --- |", *[f"| {k} | {_fmt(v)} |" for k, v in rows], ""]
    rewards = config.get("rewards") or {}
    if rewards:
        lines += [
            "Rewards (see `docs/rewards.md`):",
            "",
            "| label | plugin | weight | kwargs |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {label} | `{r.get('spec')}` | {_fmt(r.get('weight'))} | {_fmt(r.get('kwargs') or {})} |"
            for label, r in rewards.items()
        ]
        lines.append("")
    else:
        lines += ["No reward configuration was recorded.", ""]
    return lines


def _evaluation_section(config: dict) -> list[str]:
    """The run's own held-out evaluation (before / after), then ``--eval-json`` (an eval report's table, or any
    JSON's numbers); a line saying so when there is neither."""
    t = config.get("training") or {}
    final = t.get("final_eval") or {}
    lines = ["## Evaluation", "", *_held_out_table(t.get("initial_eval") or {}, final)]
    report = config.get("eval") or {}
    table = _eval_report_table(report)
    extra = {} if table else _flat_numbers(report)
    if table:
        lines += [
            "Against budgeted allocators and the oracle (`vaportok-rl eval`, passed with `--eval-json`):",
            "",
            table,
            "",
        ]
    elif extra:
        lines += ["Additional evaluation (`--eval-json`):", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in extra.items()]
        lines.append("")
    if not final and not extra and not table:
        lines += [
            "No held-out evaluation was recorded for this run (set `eval.num_videos` > 0 when training, or "
            "pass `--eval-json` to `vaportok-rl export`).",
            "",
        ]
    return lines


def _held_out_table(initial: dict, final: dict) -> list[str]:
    """The training run's held-out metrics before and after (none when it logged no final evaluation)."""
    if not final:
        return []
    keys = [k for k in final if k != "step" and isinstance(final[k], int | float)]
    before = f"before (step {initial.get('step', 0)})"
    lines = [
        "Held-out evaluation logged by the training run (fixed held-out videos; `eval/*` keys of "
        "`metrics.jsonl`; PSNR in dB, tokens per clip out of K):",
        "",
        f"| metric | {before} | after (step {final.get('step', '?')}) | change |",
        "| --- | --- | --- | --- |",
    ]
    for k in keys:
        a = initial.get(k)
        change = _fmt(final[k] - a) if isinstance(a, int | float) and isinstance(final[k], int | float) else ""
        lines.append(f"| {k} | {_fmt(a) if a is not None else ''} | {_fmt(final[k])} | {change} |")
    lines.append("")
    return lines
