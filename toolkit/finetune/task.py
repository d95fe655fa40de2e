"""A fine-tuning run as a submitit job that survives preemption and timeouts.

:class:`FinetuneTask` is pickled by submitit and called on the node. It always resumes
from the run folder's last checkpoint, so when SLURM sends the timeout/preemption signal,
submitit calls :meth:`FinetuneTask.checkpoint` (inherited from
``submitit.helpers.Checkpointable``), which requeues the same task, and the new attempt
continues from the last checkpoint written (every ``save_every`` optimizer steps and at each
epoch end): at most ``save_every`` steps are redone. The same holds for ``scontrol requeue``
or a resubmission.

Example:
    >>> import submitit
    >>> executor = submitit.AutoExecutor(folder="ft/_jobs")  # doctest: +SKIP
    >>> executor.update_parameters(timeout_min=240, slurm_partition="gpu", gpus_per_node=1)  # doctest: +SKIP
    >>> job = executor.submit(FinetuneTask(config, merge=True))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Dict

import submitit

from toolkit.finetune.config import FinetuneConfig

log = logging.getLogger(__name__)


class FinetuneTask(submitit.helpers.Checkpointable):
    """A picklable fine-tuning job: ``FinetuneTask(config)()`` trains, resuming when it can.

    Args:
        config: the run.
        merge: write ``merged/`` once training has finished.
    """

    def __init__(self, config: FinetuneConfig, merge: bool = False) -> None:
        self.config = config
        self.merge = merge

    def __call__(self) -> Dict[str, Any]:
        """Train (resuming from the last checkpoint if any); returns the run's summary."""
        from toolkit.finetune.trainer import run_finetune

        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return run_finetune(self.config, resume=True, merge=self.merge, progress=False)
