"""How a module's panel looks and what a finished run shows: one description for the Slicer widget and the web page.

A module library describes its front end once (``<Module>Lib/frontend.py``): its :class:`Section` s (a group of
settings with its :class:`Action` buttons, shown :class:`When` a choice setting has a value) and, per action, how a
finished run becomes an :class:`Outcome`: the message, the nodes the views show, the settings it fills in (the new
output node, the new model), a table, the nodes a web run saves. The Slicer ``ModuleWidgetMixin`` and the web panel
both read it. Nothing here imports torch, qt or a web framework.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

__all__ = ["When", "Outcome", "Action", "Section", "trainedOutcome"]


@dataclasses.dataclass(frozen=True)
class When:
    """A condition on one choice setting: ``When("task", "ultrasound")``, or with ``not_=True`` its negation.
    Checked in the browser (:meth:`javascript`) and in Python (:meth:`holds`)."""

    setting: str
    value: str
    not_: bool = False

    def holds(self, p) -> bool:
        return (getattr(p, self.setting) == self.value) != self.not_

    def javascript(self, variable: str) -> str:
        return f"{variable} {'!==' if self.not_ else '==='} '{self.value}'"


@dataclasses.dataclass
class Outcome:
    """What a finished run shows.

    Args:
        message: one or two sentences for the status line / the page's message.
        background, foreground: volume nodes for the slice views (the foreground blended over the background).
        foregroundColors: the foreground's color table node ID (e.g. a heat map for a saliency map).
        settings: settings the run fills in (``{"outputSegmentation": node}``, ``{"modelId": "brain"}``).
        table: a table node to show in a table view.
        rows: the table's rows as dicts (the web page shows them under the panel).
        saved: nodes a web run writes to its output folder.
        warnings: things to check in the result (shown as a warning).
    """

    message: str
    background: Any = None
    foreground: Any = None
    foregroundColors: str | None = None
    settings: dict = dataclasses.field(default_factory=dict)
    table: Any = None
    rows: list[dict] = dataclasses.field(default_factory=list)
    saved: list = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def modelId(self) -> str | None:
        """A newly trained catalog model, selected for Apply."""
        return self.settings.get("modelId")


@dataclasses.dataclass(frozen=True)
class Action:
    """A button: the module's job action ``key`` (``ModuleDescription.actions``), or for an ``immediate`` action
    ``run(logic, p)`` whose output is ready at once (no job); ``finished(p, output) -> Outcome``; the
    ``required`` settings must be set first."""

    key: str
    title: str
    finished: Callable[[Any, Any], Outcome]
    required: tuple[str, ...] = ()
    immediate: bool = False
    run: Callable | None = None
    when: When | None = None


@dataclasses.dataclass(frozen=True)
class Section:
    """A part of the panel: the settings of ``group`` (in definition order) and ``actions``, shown ``when``."""

    title: str
    group: str
    actions: tuple[Action, ...] = ()
    when: When | None = None


def trainedOutcome(p, result, **settings) -> Outcome:
    """A finished training run: the model it added to the catalog is selected for Apply."""
    model, history = result.catalogId or str(result.modelPath), result.history
    facts = [f"{len(history.trainLoss)} epochs in {history.seconds:.0f} s"]
    if history.bestMetric is not None:
        facts.append(f"best validation metric {history.bestMetric:.3f} (epoch {history.bestEpoch})")
    return Outcome(f"Trained '{model}': {', '.join(facts)}. It is selected for Apply.",
                   settings={"modelId": model, **settings})
