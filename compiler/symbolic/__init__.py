"""Symbolic plans (``tierplan-plan/2``): one plan for a range of dimension values, or buckets.

:func:`compile_symbolic` plans a model once for ``--dim NAME=LOW..HIGH``;
:func:`compile_buckets` plans one concrete plan per ``--dim NAME=V1,V2,...`` value;
:func:`instantiate` evaluates either at given values into an ordinary plan.
"""
