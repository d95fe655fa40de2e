"""Sweeps on a cluster: sweep files, cluster profiles, array tasks, executors, the launcher.

- :mod:`toolkit.launch.sweep` - what to run (validated sweep files, the task plan).
- :mod:`toolkit.launch.profile` - where and how (cluster profiles -> submitit parameters).
- :mod:`toolkit.launch.task` - what one array task runs on its node (resumable).
- :mod:`toolkit.launch.executors` - slurm / local / debug behind one interface.
- :mod:`toolkit.launch.launcher` - ``bin/launch``: submit, record, wait, status.
"""
