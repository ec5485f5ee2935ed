"""Where a report's plan and costs come from: a model to compile, or a plan file.

A plan file alone gives every memory view, and the latency views too when its
operators carry their costs (``ops[*].cost``, written by the compile: the figures
the compile printed). A plan without them (an older one) is costed again, which
needs the model's shapes: :func:`view_of_plan_file` finds the model (``--model``,
else by the file name ``plan["model"]["path"]`` in the plan's folder only:
:func:`model_of_plan`), loads it with the plan's ``dims``, writes the plan's
placement back onto its IR and costs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tierplan.compiler.cost import OpCost, estimate
from tierplan.compiler.errors import InputError
from tierplan.compiler.frontend import _assign_node_names, load_model, read_model_proto
from tierplan.compiler.ir import IRGraph, Tiles
from tierplan.compiler.plan import Plan, PlanBuffer, read_plan
from tierplan.compiler.report.data import PlanView, carried_costs, require_viewable
from tierplan.compiler.target import Target, Tier, load_target, preset_names


def plan_target(plan: Plan) -> Target:
    """The plan's target (its types checked by :func:`read_plan`): the preset of that name
    when it matches, else the plan's tiers."""
    data = plan["target"]
    tiers = tuple(
        Tier(t["name"], t["capacity"], float(t["bandwidth"]), float(t["latency"]))
        for t in data["tiers"]
    )
    name = data["name"]
    if name in preset_names():
        preset = load_target(name)
        if preset.tiers == tiers:
            return preset
    return Target(name=name, tiers=tiers, alignment=data["alignment"])


def replay_plan(plan: Plan, ir: IRGraph) -> None:
    """Write the plan's steps, devices, tiles and first buffer of each tensor onto ``ir``."""
    for op in plan.get("ops", []):
        if ir.has_operator(op["node"]):
            target = ir.operator(op["node"])
            target.step, target.device = op["step"], op.get("device", 0)
            tiles = op.get("tiles")
            if tiles:
                target.tiles = Tiles(
                    dict(tiles["axes"]), tiles["count"], tiles["l1_bytes"], tiles["traffic_bytes"]
                )
    for b in reversed(PlanBuffer.of_plan(plan)):
        if ir.has_tensor(b.tensor):
            tensor = ir.tensor(b.tensor)
            tensor.start, tensor.end = b.start, b.end
            tensor.device, tensor.tier, tensor.offset = b.device, b.tier, b.offset
            tensor.alias_of = b.alias_of


def model_symbols(model: Path) -> set[str]:
    """The symbolic dimensions of a model's graph inputs (none for the annotated copy
    ``tierplan compile`` writes: its shapes are bound)."""
    graph = read_model_proto(model)[0].graph
    return {d.dim_param for v in graph.input for d in v.type.tensor_type.shape.dim if d.dim_param}


def plan_costs(plan: Plan, model: Path) -> list[OpCost]:
    """Per-operator costs of ``plan`` for the model at ``model``.

    The plan's ``dims`` bind the model's symbolic dimensions; those the model no
    longer has (the annotated copy is already bound) are not the user's mistake.
    """
    symbols = model_symbols(model)
    dims = {
        str(k): v
        for k, v in plan.get("dims", {}).items()
        if isinstance(v, int) and not isinstance(v, bool) and str(k) in symbols
    }
    ir = load_model(model, dims=dims).ir
    replay_plan(plan, ir)
    unscheduled = next((op.name for op in ir.operators() if op.step is None), None)
    if unscheduled is not None:
        raise InputError(
            f"the plan does not schedule the model's operator {unscheduled!r}: is it the plan "
            f"of {str(model)!r}? (tierplan check lists every problem)"
        )
    scheduled = {op.name for op in ir.scheduled_operators()}
    return [c for c in estimate(ir, plan_target(plan)) if c.name in scheduled]


def model_of_plan(plan: Plan, plan_path: Path) -> Path:
    """The model a plan file names, looked for only in the plan's folder: the file of
    that name, or the annotated copy that ``tierplan compile`` writes there (same graph).

    A plan is untrusted input: a ``model.path`` with a folder in it (``../../etc/passwd``,
    an absolute path) is refused without being opened; the user passes ``--model`` instead.
    """
    recorded = plan["model"]["path"]
    if not recorded:
        raise InputError(f"plan file {str(plan_path)!r} names no model; pass --model")
    if Path(recorded).name != recorded or recorded in (".", ".."):
        raise InputError(
            f"plan file {str(plan_path)!r} names the model {recorded!r} outside its own "
            "folder, which is never opened; pass --model"
        )
    annotated = plan_path.parent / f"{Path(recorded).stem}.planned.onnx"
    for candidate in (plan_path.parent / recorded, annotated):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"cannot find the model {recorded!r} named by {str(plan_path)!r} in its folder; "
        "pass --model"
    )


def _scope_of(props: dict[str, str]) -> str | None:
    """The module an exporter says a node comes from: the innermost of the torch
    exporter's ``pkg.torch.onnx.name_scopes`` (a Python list literal), else the deepest
    named module of its ``namespace`` ("name: class/name: class/.../op: aten.op")."""
    scopes = props.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, list) and names and isinstance(names[-1], str) and names[-1]:
            return names[-1]
    modules = [
        part.split(": ", 1)
        for part in props.get("namespace", "").split("/")
        if ": " in part and not part.split(": ", 1)[1].startswith("aten.")
    ]
    named = [(name, cls.rsplit(".", 1)[-1]) for name, cls in modules if name]
    return f"{named[-1][0]} ({named[-1][1]})" if named else None


def op_sources(model: Path) -> dict[str, str]:
    """Operator name -> the source module its exporter recorded (operators without one
    are left out)."""
    graph = read_model_proto(model)[0].graph
    sources = {}
    for name, node in zip(_assign_node_names(graph), graph.node, strict=True):
        scope = _scope_of({p.key: p.value for p in node.metadata_props})
        if scope:
            sources[name] = scope
    return sources


def view_of_plan_file(plan_path: Path, model: Path | None = None) -> PlanView:
    """A plan file with its costs (carried, else from the model) and operator sources
    (the model is found as the module docstring says)."""
    plan = read_plan(plan_path)
    require_viewable(plan)  # before costing, which replays the plan on the model
    carried = carried_costs(list(plan.get("ops", [])))
    if carried is None:
        path = model or model_of_plan(plan, plan_path)
        return PlanView(plan, plan_costs(plan, path), op_sources(path))
    try:
        sources = op_sources(model or model_of_plan(plan, plan_path))
    except InputError:  # the costs are in the plan; the sources are a nicety
        sources = {}
    return PlanView(plan, carried, sources)
