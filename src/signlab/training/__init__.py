"""Training any task with Lightning: the :class:`~signlab.training.task.Task` abstraction and what
tasks share (task), the one training routine (run), the gloss and sentence tasks, callbacks.

The top layer below the CLI: it may import every other package (it finishes a run by building
and evaluating the inference bundle); nothing but the CLI, the demo and the public API imports it.
"""
