"""The report as text: the markdown tables ``vaportok-rl eval`` prints (the records at the budget, tokens saved
vs Fixed per chooser and budget, the head under a measure and under PSNR side by side), and the chooser labels
the plots share."""

from __future__ import annotations

__all__ = ["alloc_label", "format_rate_quality", "format_side_by_side", "format_table", "rq_label"]


def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def alloc_label(name: str) -> str:
    return name if name == "fixed" else f"{name} (head scorer)"


def rq_label(name: str) -> str:
    return {
        "head": "head (price knob)",
        "oracle": "oracle (max mean PSNR)",
        "search": "search (binary, per clip)",
    }.get(name, alloc_label(name))


def format_table(report: dict) -> str:
    """A readable (markdown) table of the records at the budget, plus the head's margins."""
    s, at = report["setup"], report["at_budget"]
    rows = [(f"head {m}", r) for m, r in at["policy"].items()]
    rows += [(alloc_label(n) + (" *" if n == s["allocator"] else ""), r) for n, r in at["allocators"].items()]
    oracles = at.get("oracles") or {s["oracle"]["metric"]: at["oracle"]}
    rows += [(f"oracle ({s['oracle']['solver']}, true {metric})", r) for metric, r in oracles.items()]
    held_out = f"{s['split']} split, seed {s['seed']}" if s["split"] else f"seed {s['seed']}"
    lines = [
        f"eval  head={s['head']}  data={s['data']} ({held_out})  clips={s['clips']}  K={s['num_latents']}  "
        f"grid={len(s['k_grid'])} points",
        f"budget {s['budget']:.2f} mean tokens/clip ({s['budget_source'].replace('_', ' ')})",
        "",
        "| allocation | tokens mean ± std | PSNR dB | SSIM | LPIPS | MSE | prior top-5 | ρ(tok,SC) | ρ(tok,TC) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['tokens_mean']:.2f} ± {r['tokens_std']:.2f} | {_f(r['psnr'], '.3f')} | "
            f"{_f(r['ssim'], '.4f')} | {_f(r['lpips'], '.4f')} | {_f(r['mse'], '.3e')} | "
            f"{_f(r['prior_top5'], '.3f')} | {_f(r['spearman_sc'], '+.3f')} | {_f(r['spearman_tc'], '+.3f')} |"
        )
    if "argmax" in at["policy"]:
        h = at["policy"]["argmax"]
        parts = []
        for name, r in [*at["allocators"].items(), ("oracle", at["oracle"])]:
            d = None if h["psnr"] is None or r["psnr"] is None else h["psnr"] - r["psnr"]
            parts.append(f"{name} {_f(d, '+.3f')} dB")
        lines += ["", "head argmax PSNR minus: " + ", ".join(parts)]
    if report.get("rate_quality"):
        lines += ["", format_rate_quality(report["rate_quality"])]
    if report.get("measure"):
        lines += ["", format_rate_quality(report["measure"])]
        if report.get("rate_quality") and "head" in report["measure"]["curves"]:
            lines += ["", format_side_by_side(report["measure"], report["rate_quality"])]
    if report.get("plots"):
        lines += ["", "plots: " + ", ".join(report["plots"].values())]
    return "\n".join(lines)


def _unit(measure: str) -> str:
    return " dB" if measure == "psnr" else ""


def format_rate_quality(rq: dict) -> str:
    """Markdown: tokens saved vs Fixed at equal mean quality (PSNR unless ``rq["measure"]`` says otherwise) and the
    share of that measure's oracle's savings, per chooser and budget, then each chooser at its own budget."""
    budgets, measure = rq["budgets"], rq.get("measure", "psnr")
    unit, name_ = _unit(measure), measure.upper() if measure in ("psnr", "mse", "ssim", "lpips") else measure
    lines = [
        f"tokens saved vs Fixed at equal mean {name_} (share of the {name_} oracle's savings at the same tokens)",
        "",
        "| chooser | " + " | ".join(f"budget {b:g}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for name, points in rq["curves"].items():
        cells = []
        for p in points:
            share = "" if name in ("fixed", "oracle") or p["oracle_share"] is None else f" ({p['oracle_share']:.0%})"
            cells.append(f"{p['quality']:.4g}{unit} @ {p['tokens']:.1f}: {_f(p['tokens_saved'], '+.1%')}{share}")
        decodes = f" [{points[0]['decodes_per_clip']:.1f} decodes/clip]" if name == "search" else ""
        lines.append(f"| {rq_label(name)}{decodes} | " + " | ".join(cells) + " |")
    if rq["own"]:
        lines += [
            "",
            f"| at its own budget | tokens | {name_}{unit} | saved vs Fixed | oracle saves | share |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in rq["own"].items():
            lines.append(
                f"| {name} | {p['tokens']:.2f} | {p['quality']:.4g} | {_f(p['tokens_saved'], '+.1%')} | "
                f"{_f(p['oracle_saved'], '.1%')} | {_f(p['oracle_share'], '.0%')} |"
            )
    return "\n".join(lines)


def format_side_by_side(judged: dict, psnr: dict) -> str:
    """Markdown: the head (knob curve and own budget) under a measure and under PSNR, side by side."""
    m = judged["measure"]
    lines = [
        f"the head under {m} and under PSNR (tokens saved vs Fixed at equal mean quality; share of each oracle's)",
        "",
        f"| head | tokens | saved ({m}) | share ({m}) | saved (PSNR) | share (PSNR) |",
        "|---|---|---|---|---|---|",
    ]
    knob = zip(judged["curves"]["head"], psnr["curves"]["head"], strict=True)
    pairs = [(f"knob @ {a['budget']:g}", a, b) for a, b in knob]
    pairs += [(name, judged["own"][name], psnr["own"][name]) for name in judged["own"] if name in psnr["own"]]
    for name, a, b in pairs:
        lines.append(
            f"| {name} | {a['tokens']:.2f} | {_f(a['tokens_saved'], '+.1%')} | {_f(a['oracle_share'], '.0%')} | "
            f"{_f(b['tokens_saved'], '+.1%')} | {_f(b['oracle_share'], '.0%')} |"
        )
    return "\n".join(lines)
