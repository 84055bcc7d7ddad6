"""`skinscreen evaluate --cv`: the cross-validation report (`models/cv/<name>.cv.json`) as text."""

from __future__ import annotations

from typing import Any


def _ci(values: list[float] | None) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else ""


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _pct_ci(values: list[float] | None) -> str:
    return f"[{100 * values[0]:.1f}, {100 * values[1]:.1f}] %" if values else ""


def format_cv_report(report: dict[str, Any]) -> str:
    """Variants, the chosen one per class, calibration, conformal sets, gate and triage."""
    lines = [f"cross-validation ({report['oof']}): out-of-fold, photo-group folds"]
    lines.append(
        f"{'variant':11s} {'top-1':>7s} {'95 % CI':17s} {'macro-F1':>8s} {'95 % CI':17s} ECE"
    )
    for name, v in report["variants"].items():
        mark = " <- chosen" if name == report["chosen"] else ""
        lines.append(
            f"{name:11s} {v['top1']:7.4f} {_ci(v['top1_ci95']):17s} {v['macro_f1']:8.4f} "
            f"{_ci(v['macro_f1_ci95']):17s} {v['ece_15']:.4f}{mark}"
        )
    chosen = report["variants"][report["chosen"]]
    lines.append(
        f"\n{report['chosen']}: n={chosen['n']} photos in {chosen['groups']} groups; ECE-15 "
        f"{chosen['ece_15']:.4f} {_ci(chosen['ece_15_ci95'])} (temperature cross-fitted); "
        f"shipped T={report['temperature']}"
    )
    if "gap_to_teacher" in report:  # a YOLO student (`yolo_cv`)
        teacher, gap = report["teacher"], report["gap_to_teacher"]
        how = "distilled from" if report.get("distillation") else "compared with"
        lines.append(
            f"{how} {teacher['name']} ({teacher['weights']}, OOF macro-F1 "
            f"{report['teacher_macro_f1']:.4f}): {abs(gap):.4f} {'below' if gap >= 0 else 'above'}"
            " it (target: at most 0.03 below)"
        )
    group = chosen.get("by_photo_group")
    if group:
        lines.append(
            f"one vote per photo group: top-1 {group['top1']:.4f}, "
            f"macro-F1 {group['macro_f1']:.4f} ({group['groups']} groups, "
            f"{group['groups_all_images_correct']} with every photo right)"
        )
    lines.append(
        f"{'class':10s} {'precision':>9s} {'recall':>7s} {'95 % CI':17s} {'F1':>6s} "
        f"{'95 % CI':17s} n"
    )
    for name, c in chosen["per_class"].items():
        lines.append(
            f"{name:10s} {c['precision']:9.4f} {c['recall']:7.4f} {_ci(c['recall_ci95']):17s} "
            f"{c['f1']:6.4f} {_ci(c['f1_ci95']):17s} {c['support']}"
        )
    conf = report["conformal"]
    lines.append(
        f"\nconformal sets (target {_pct(conf['coverage_target'])}): coverage "
        f"{_pct(conf['coverage'])} {_pct_ci(conf['coverage_ci95'])}, mean size "
        f"{conf['mean_set_size']:.2f}, singletons {_pct(conf['share_singleton'])} (accuracy "
        f"{_pct(conf['singleton_accuracy'])}); q̂={conf['threshold']}"
    )
    gate = report["gate"]
    lines.append(
        f"gate v2 ({gate.get('distance', 'last_layer')} feature distance): skin photos rejected "
        f"{_pct(gate['skin_rejected'])} {_pct_ci(gate['skin_rejected_ci95'])}, "
        f"unusual_image {_pct(gate['skin_unusual'])}; reasons "
        f"{gate['rejection_reasons']}"
    )
    lines.append(
        "  rejected per class: "
        + ", ".join(f"{k} {_pct(v)}" for k, v in gate["skin_rejected_per_class"].items())
    )
    negatives = gate.get("negatives", {})
    refused = sum(1 for v in negatives.values() if "passed" not in v["verdicts"])
    rejected = sum(1 for v in negatives.values() if set(v["verdicts"]) == {"rejected"})
    lines.append(
        f"  negatives refused or held back by every fold's model: {refused}/{len(negatives)} "
        f"(rejected by every one: {rejected}); "
        f"accepted by some fold: {gate['negatives_accepted'] or 'none'}"
    )
    held_back = sorted(n for n, v in negatives.items() if "unusual" in v["verdicts"])
    if held_back:
        lines.append(f"  held back as unusual_image by some fold: {held_back}")
    triage = report["triage"]["cross_fitted"]
    lines.append(
        f"triage: malignancy threshold {report['triage']['threshold']}; cross-fitted Carcinoma "
        f"sensitivity {_pct(triage['sensitivity']['per_photo'])} "
        f"{_pct_ci(triage['sensitivity'].get('per_photo_ci95'))}, non-carcinoma urgent "
        f"{_pct(triage['non_carcinoma_urgent_share']['per_photo'])} "
        f"{_pct_ci(triage['non_carcinoma_urgent_share'].get('per_photo_ci95'))}"
    )
    return "\n".join(lines)
