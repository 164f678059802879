"""The registry of pipeline templates, keyed by (name, version).

A template version never changes once released: a new recipe is a new version, so every spec
keeps training the way it was written against.
"""

from __future__ import annotations

from typing import Any

from ..domain import UnknownTemplate
from .base import FeatureKinds, PipelineTemplate, TemplateParams
from .forecasting import TimeSeriesForecasterV1
from .tabular import TabularClassifierV1, TabularClassifierV2, TabularRegressorV1, TabularRegressorV2

__all__ = [
    "TEMPLATES",
    "FeatureKinds",
    "PipelineTemplate",
    "TemplateParams",
    "get_template",
    "known_templates",
]

TEMPLATES: dict[tuple[str, str], PipelineTemplate[Any]] = {
    (template.name, template.version): template
    for template in (
        TabularClassifierV1(),
        TabularClassifierV2(),
        TabularRegressorV1(),
        TabularRegressorV2(),
        TimeSeriesForecasterV1(),
    )
}


def known_templates() -> list[str]:
    """`name vN` of every template, sorted."""
    return [f"{name} v{version}" for name, version in sorted(TEMPLATES)]


def get_template(name: str, version: str) -> PipelineTemplate[Any]:
    """The template `name` at `version`; raises `UnknownTemplate` listing the known ones."""
    template = TEMPLATES.get((name, version))
    if template is None:
        raise UnknownTemplate(
            f"no pipeline template {name!r} version {version!r}; known templates: "
            + ", ".join(known_templates())
        )
    return template
