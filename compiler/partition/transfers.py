"""Apply a device assignment to the IR: devices, copies at the cuts, transfers.

For each tensor read on a device other than its home (the rules of
:mod:`~tierplan.compiler.partition.costs`):

- an activation or graph input gets a copy ``<name>@<device>`` (``copy_of`` set,
  same kind and bytes) written by an inserted ``Transfer`` operator that runs on
  the home device, reads the tensor and is scheduled just before the first
  reader on the receiving device; those readers then read the copy;
- a weight gets a replica ``<name>@<device>`` with no producer (weights are
  loaded before the inference and live for the whole schedule anyway).

An output declared in place or as a view of an input that is now a copy
(``alias_of``) is re-pointed to the copy, which lives on its device; a Concat that
reads a part from another device copies all its inputs (concat parts are all or
none). Steps are
renumbered and tile buffers follow their operator (``scratch_of``) to its device;
every live range must be recomputed afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Operator, Tensor


def _free_name(base: str, exists: Callable[[str], bool]) -> str:
    name, count = base, 0
    while exists(name):
        count += 1
        name = f"{base}~{count}"
    return name


def _copy(ir: IRGraph, tensor: Tensor, device: int) -> Tensor:
    name = _free_name(f"{tensor.name}@{device}", ir.has_tensor)
    # A copy keeps a constant's elements: where a slice view lies depends on them.
    copy = Tensor(
        name, tensor.dtype, tensor.shape, tensor.nbytes, tensor.kind, device=device,
        copy_of=tensor.name, value=tensor.value,
    )  # fmt: skip
    ir.add_tensor(copy)
    return copy


def apply_assignment(ir: IRGraph, devices: Sequence[int]) -> list[Operator]:
    """Place operator ``i`` of the schedule on ``devices[i]``; return the transfers added."""
    ops = ir.scheduled_operators()
    for op, device in zip(ops, devices, strict=True):
        op.device = int(device)
    before: dict[str, list[Operator]] = defaultdict(list)  # reader name -> transfers to run first
    transfers = []
    for tensor in list(ir.tensors()):
        readers = sorted(ir.consumers(tensor.name), key=lambda op: op.step or 0)
        if ir.has_producer(tensor.name):
            tensor.device = ir.producer(tensor.name).device
        elif readers:
            tensor.device = readers[0].device
        remote: dict[int, list[Operator]] = defaultdict(list)
        for reader in readers:
            if reader.device != tensor.device:
                remote[reader.device].append(reader)
        for device, reads in sorted(remote.items()):
            copy = _copy(ir, tensor, device)
            if tensor.kind != "weight":
                transfer = Operator(
                    _free_name(f"transfer/{tensor.name}@{device}", ir.has_operator),
                    TRANSFER_OP,
                    domain="tierplan",
                    inputs=[tensor.name],
                    outputs=[copy.name],
                    attributes={"to_device": device},
                    device=tensor.device,
                )
                ir.add_operator(transfer)
                before[reads[0].name].append(transfer)
                transfers.append(transfer)
            for reader in reads:
                ir.redirect_read(reader, tensor.name, copy.name)
                for output in reader.outputs:
                    if output and ir.tensor(output).alias_of == tensor.name:
                        ir.tensor(output).alias_of = copy.name
                if tensor.alias_of in reader.outputs:
                    # A Concat now reading a copy copies all its inputs (all or none).
                    whole = tensor.alias_of
                    for part in [tensor, *(ir.tensor(n) for n in reader.inputs if n)]:
                        if part.alias_of == whole:
                            part.alias_of = None
    order: list[Operator] = []
    for op in ops:
        order += before.get(op.name, [])
        order.append(op)
    for step, op in enumerate(order):
        op.step = step
    for tensor in ir.tensors():
        if tensor.scratch_of is not None:  # a tile buffer follows its operator
            tensor.device = ir.operator(tensor.scratch_of).device
    return transfers
