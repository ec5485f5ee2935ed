"""Views of a plan for people: HTML report, PNG timeline, terminal tables.

:class:`PlanView` (``data``) computes what they show; ``html``, ``plot`` and
``inspect`` render it; ``source`` finds a plan's model and costs; ``progress``
shows long CLI steps.
"""

from tierplan.compiler.report.data import PlanView

__all__ = ["PlanView"]
