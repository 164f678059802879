"""The readable evaluation report: verdict first, the gate table, one figure, the lineage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from modelfleet_contracts import GateResult, ModelEvaluated
from modelfleet_contracts.training import Task

from .domain import Outcomes, headroom, verdict_summary

REPORT_FILE = "report.md"
FIGURE_FILE = "report.png"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def render_markdown(verdict: ModelEvaluated, *, figure: str | None) -> str:
    """The report's text; `figure` is the relative path of its image, if any."""
    status = "PASSED" if verdict.passed else "FAILED"
    lines = [
        f"# Evaluation of `{verdict.model}`, run `{verdict.run_id}`",
        "",
        f"**Verdict: {status}**: {verdict_summary(verdict.gates)}.",
        "",
        "| gate | value | threshold | verdict | detail |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for gate in verdict.gates:
        mark = "pass" if gate.passed else "**FAIL**"
        numbers = f"{_format(gate.value)} | {_format(gate.threshold)}"
        lines.append(f"| `{gate.gate}` | {numbers} | {mark} | {_cell(gate.detail)} |")
    champion = f"version {verdict.champion_version}" if verdict.champion_version else "none yet"
    lines += ["", f"Champion compared with: {champion}.", ""]
    if figure:
        lines += [f"![diagnostics and gate headroom]({figure})", ""]
    lines += ["## Lineage", "", "| key | value |", "| --- | --- |"]
    lines += [f"| {_cell(key)} | `{_cell(value)}` |" for key, value in sorted(verdict.lineage.items())]
    lines += ["", f"Model: `{verdict.model_uri}`; artifact digest `{verdict.artifact_digest or '—'}`.", ""]
    return "\n".join(lines)


def _plot_diagnostics(axes: Axes, task: Task, outcomes: Outcomes) -> None:
    if task == "classification" and outcomes.scores is not None and outcomes.scores.shape[1] >= 2:
        classes = outcomes.scores.shape[1]
        shown = [1] if classes == 2 else list(range(classes))
        for k in shown:
            positive = outcomes.truth == k
            if positive.all() or not positive.any():
                continue
            fpr, tpr, _ = roc_curve(positive, outcomes.scores[:, k])
            axes.plot(fpr, tpr, label="ROC" if classes == 2 else f"class {k} vs rest")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the holdout")
        axes.legend(loc="lower right", fontsize="small")
        return
    truth = np.asarray(outcomes.truth, dtype=np.float64)
    predicted = np.asarray(outcomes.predicted, dtype=np.float64)
    axes.scatter(truth, predicted, s=6, alpha=0.5)
    low, high = (
        float(np.nanmin([truth.min(), predicted.min()])),
        float(np.nanmax([truth.max(), predicted.max()])),
    )
    axes.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=0.8)
    axes.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual on the holdout")


def _plot_gates(axes: Axes, gates: Sequence[GateResult]) -> None:
    rows = [(gate.gate, headroom(gate), gate.passed) for gate in gates]
    names = [name for name, _, _ in rows]
    values = [0.0 if value is None else value for _, value, _ in rows]
    colors = ["tab:green" if passed else "tab:red" for _, _, passed in rows]
    positions = np.arange(len(rows))
    axes.barh(positions, values, color=colors)
    axes.set_yticks(positions, labels=names, fontsize="small")
    axes.invert_yaxis()
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlim(-1.05, 1.05)
    axes.set(xlabel="headroom vs threshold (share, clipped to ±1)", title="Gates (red = failed)")


def render_figure(
    path: Path, *, task: Task | None, outcomes: Outcomes | None, gates: Sequence[GateResult], dpi: int
) -> None:
    """One PNG: ROC or predicted-vs-actual (when there are predictions) next to the gate headroom."""
    # A bare Figure renders with the Agg canvas: no display, and no pyplot global state, which is
    # not safe in the worker threads evaluations run in.
    panels = 2 if (outcomes is not None and task is not None and len(outcomes)) else 1
    figure = Figure(figsize=(4.5 * panels, 3.5))
    axes = figure.subplots(1, panels, squeeze=False)
    if panels == 2:
        assert outcomes is not None
        assert task is not None
        _plot_diagnostics(axes[0][0], task, outcomes)
    _plot_gates(axes[0][panels - 1], gates)
    # Fixed margins instead of tight_layout(): measuring every label's extent cost a third of
    # the rendering, once per model, for a layout that is the same every time.
    figure.subplots_adjust(left=0.1 if panels == 2 else 0.28, right=0.97, bottom=0.15, top=0.88, wspace=0.55)
    figure.savefig(path, dpi=dpi)


def write_report(
    directory: Path, verdict: ModelEvaluated, *, task: Task | None, outcomes: Outcomes | None, dpi: int
) -> list[Path]:
    """Write `report.md` and `report.png` into `directory`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    figure = directory / FIGURE_FILE
    render_figure(figure, task=task, outcomes=outcomes, gates=verdict.gates, dpi=dpi)
    report = directory / REPORT_FILE
    report.write_text(render_markdown(verdict, figure=FIGURE_FILE))
    return [report, figure]
