"""Where a report's plan and costs come from: a model to compile, or a plan file.

A plan file alone gives every memory view. The latency views need per-operator
costs, which need the model's shapes: :func:`view_of_plan_file` finds the model
(``--model``, else by the file name ``plan["model"]["path"]`` in the plan's folder
only: :func:`model_of_plan`), loads it
with the plan's ``dims``, writes the plan's placement back onto its IR and costs it.
"""

from __future__ import annotations

from pathlib import Path

from tierplan.compiler.cost import OpCost, estimate
from tierplan.compiler.errors import InputError
from tierplan.compiler.frontend import load_model
from tierplan.compiler.ir import IRGraph, Tiles
from tierplan.compiler.plan import Plan, read_plan
from tierplan.compiler.report.data import PlanView, require_viewable
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
    for buffer in reversed(plan.get("buffers", [])):
        if ir.has_tensor(buffer["tensor"]):
            tensor = ir.tensor(buffer["tensor"])
            tensor.start, tensor.end = buffer["start"], buffer["end"]
            tensor.device, tensor.tier, tensor.offset = (
                buffer["device"],
                buffer["tier"],
                buffer["offset"],
            )
            tensor.alias_of = buffer.get("alias_of")


def plan_costs(plan: Plan, model: Path) -> list[OpCost]:
    """Per-operator costs of ``plan`` for the model at ``model``."""
    ir = load_model(model, dims=plan.get("dims", {})).ir
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


def view_of_plan_file(plan_path: Path, model: Path | None = None) -> PlanView:
    """A plan file with its costs (the model is found as the module docstring says)."""
    plan = read_plan(plan_path)
    require_viewable(plan)  # before costing, which replays the plan on the model
    return PlanView(plan, plan_costs(plan, model or model_of_plan(plan, plan_path)))
