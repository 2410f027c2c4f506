"""The app of notebook 03 (``03_synflow_iterations``): how iterating SynFlow keeps every
layer alive. The study (:func:`nbkit.studies.iterations.iteration_study`) has run SynFlow
with every number of iterations and both schedules; the app's slider and toggle only
pick a run and draw it with :func:`nbkit.viz.pruning.synflow_iterations_figure`.

>>> study = iterations.iteration_study(iterations.QUICK)
>>> app = synflow_iterations_app(study, iterations=100)
"""

from __future__ import annotations

import ipywidgets as W

from ..studies.collapse import describe_model
from ..studies.iterations import PUBLISHED_MAX_RATIO
from ..viz import pruning as viz
from .app import App

__all__ = ["iterations_view", "synflow_iterations_app"]


def iterations_view(study: dict, iterations: int, schedule: str) -> dict:
    """Keyword arguments of :func:`nbkit.viz.pruning.synflow_iterations_figure` for one
    run of ``study``, plus a caption."""
    if schedule not in study["runs"]:
        raise ValueError(f"schedule {schedule!r} is not in this study; choose from "
                         f"{list(study['runs'])}")
    if iterations not in study["runs"][schedule]:
        raise ValueError(f"{iterations} iterations were not run; choose from "
                         f"{study['iterations']}")
    run = study["runs"][schedule][iterations]
    its = study["iterations"]
    crit = study["critical"] or {}
    # A ratio is infinite once a layer has no flow left (it collapsed); the figure draws
    # it as ∞ at the top of its panel (widget messages cannot carry inf itself).
    max_ratio = {s: [study["runs"][s][n]["max_ratio"] for n in its] for s in study["runs"]}
    peak = run["max_ratio"]
    above = sum(r >= 1 for r in run["ratio"])
    caption = (f"{iterations} {schedule} iteration{'s' if iterations != 1 else ''} to "
               f"ρ = 10^{study['log10_rho']:g}: largest flow ratio {peak:.3g} ("
               + ("stays below 1: no iteration removes a whole layer's flow"
                  if peak < 1 else "above 1: an iteration can remove more than the weakest "
                  "layer's total flow") + ")"
               + (f"; above 1 in {above} of {len(run['ratio'])} iterations"
                  if peak >= 1 and len(run["ratio"]) > 1 else "")
               + f"; {'a layer collapsed' if run['collapsed'] else 'no layer collapsed'}.")
    if crit:
        c = crit[schedule][its.index(iterations)]
        caption += (" Critical compression with this schedule: "
                    + ("none." if c is None else f"10^{c:g}."))
    figure = dict(layers=study["layers"], sizes=study["sizes"],
                  layer_density=run["layer_density"], overall=run["density"],
                  ratio=run["ratio"], schedule=schedule, n=iterations,
                  log10_rho=study["log10_rho"], iterations=its, max_ratio=max_ratio,
                  critical={s: v for s, v in crit.items()}, rho_max_log10=study["rho_max_log10"],
                  published_max={s: PUBLISHED_MAX_RATIO[s] for s in study["runs"]
                                 if s in PUBLISHED_MAX_RATIO},
                  model=describe_model(study["model"]),
                  note=f"{study['settings']['name']} mode")
    return {"figure": figure, "caption": caption}


def synflow_iterations_app(study: dict, *, iterations: int = 100,
                           schedule: str = "exponential") -> App:
    """An iterations slider and a schedule toggle over the runs of ``study`` (from
    :func:`iteration_study`), drawn by :func:`nbkit.viz.pruning.synflow_iterations_figure`."""
    its = study["iterations"]
    if iterations not in its:
        iterations = its[-1]
    controls = {"iterations": W.SelectionSlider(options=its, value=iterations,
                                                description="iterations",
                                                continuous_update=False),
                "schedule": W.ToggleButtons(options=list(study["runs"]), value=schedule,
                                            description="schedule")}

    def compute(iterations, schedule):
        return iterations_view(study, iterations, schedule)

    return App(controls, compute, lambda r: viz.synflow_iterations_figure(**r["figure"]),
               describe=lambda r: r["caption"])
