"""``bin/infer --explain``: what a run would feed the model and decode with, before it runs.

The same facts go into every inference sidecar (:func:`toolkit.infer.check_or_write_sidecar`);
``--explain`` prints them for the manifest's first item and writes nothing.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from toolkit.manifest import Item


def explain_run(runner: Any, item: Item) -> Dict[str, Any]:
    """The set-up of ``runner`` (a :class:`toolkit.infer.Runner`) on ``item``.

    Returns:
        ``model`` (:meth:`Backend.describe`), ``prompt_template``, ``generation_settings`` (as
        asked) and :meth:`Backend.setup_facts` (official set-up, effective generation config,
        dtypes per part, chat text, token counts).
    """
    config = runner.config
    return {"item": item.id, "model": runner.backend.describe(), "prompt_template": config.prompt.name,
            "generation_settings": config.settings.to_dict(),
            **runner.backend.setup_facts(runner.probe_request(item), config.settings)}


def render(facts: Dict[str, Any]) -> str:
    """``facts`` as text: one titled section per key, the chat text verbatim between markers."""
    lines = []
    for key, value in facts.items():
        title = key.replace("_", " ")
        if isinstance(value, str) and ("\n" in value or key.endswith("chat_text")):
            lines += [f"== {title} ==", value, f"== end of {title} =="]
        elif isinstance(value, dict):
            lines.append(f"{title}:" + ("" if value else " (none)"))
            lines += [f"  {name}: {json.dumps(entry, default=str)}" for name, entry in value.items()]
        else:
            lines.append(f"{title}: {json.dumps(value, default=str)}")
    return "\n".join(lines)
