"""Reasoning interventions for ``bin/condition`` (see :mod:`toolkit.interventions.base`)."""

from toolkit.interventions import options, reasoning, rewrite  # noqa: F401 - register the built-in interventions
from toolkit.interventions.base import (Baseline, Intervention, Variant, intervention_names, parse_intervention,
                                        register_intervention)

__all__ = ["Baseline", "Intervention", "Variant", "intervention_names", "parse_intervention", "register_intervention"]
