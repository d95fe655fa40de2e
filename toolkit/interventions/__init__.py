"""Reasoning interventions for ``bin/condition`` (see :mod:`toolkit.interventions.base`)."""

from toolkit.interventions import options, reasoning, rewrite  # noqa: F401 - register the built-in interventions
from toolkit.interventions.base import (INTERVENTIONS, Baseline, Intervention, Variant, get_intervention_class,
                                        intervention_names, parse_intervention, register_intervention)

__all__ = ["INTERVENTIONS", "Baseline", "Intervention", "Variant", "get_intervention_class", "intervention_names",
           "parse_intervention", "register_intervention"]
