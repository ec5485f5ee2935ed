"""Building blocks for passes that rewrite the graph: new operators with their outputs.

A rewriting pass replaces matched operators by new ones (``inserted`` in the plan);
:class:`Emitter` adds each with a fresh output tensor of the right type and size,
named after the place being rewritten so reports can tell the pieces apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from tierplan.compiler.ir import AttributeValue, IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import Bounds

Chunks = Literal["auto"] | Annotated[int, Bounds(1)]
"""A rewriting pass's ``chunks`` option: ``auto`` (sized to its ``budget``) or a count."""


def split_sizes(count: int, chunks: int) -> list[int]:
    """``count`` items in ``chunks`` blocks as equal as can be, the larger first."""
    base, extra = divmod(count, chunks)
    return [base + 1 if index < extra else base for index in range(chunks)]


def resized(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    """``shape`` with ``axis`` set to ``size``."""
    return (*shape[:axis], size, *shape[axis + 1 :])


@dataclass
class Emitter:
    """Adds the operators of one rewrite, each with its new output tensor; ``at`` (the
    name of the place rewritten) prefixes every new name."""

    ir: IRGraph
    at: str

    def op(
        self,
        op_type: str,
        inputs: list[str],
        like: Tensor,
        shape: tuple[int, ...],
        attributes: dict[str, AttributeValue] | None = None,
        out: str | None = None,
        label: str = "",
    ) -> str:
        """Add ``op_type`` reading ``inputs``; its output (``out``, or a new tensor of
        ``like``'s dtype and ``shape``, named ``<at>/<label or op_type>``) is returned.
        A label lets reports find a kind of tensor (blocks of attention scores)."""
        if out is None:
            itemsize = like.nbytes // max(1, math.prod(like.shape))
            made = self.ir.add_value(
                f"{self.at}/{label or op_type}", like.dtype, shape, math.prod(shape) * itemsize
            )
            out = made.name
        name = self.ir.unique_name(f"{self.at}/{op_type}")
        self.ir.add_operator(
            Operator(name, op_type, inputs=inputs, outputs=[out], attributes=attributes or {})
        )
        return out

    def ints(self, values: list[int]) -> str:
        """A ``Constant`` int64 vector (its values kept in the IR, as for the model's own)."""
        name = self._constant("ints", "int64", (len(values),), {"value_ints": values})
        self.ir.tensor(name).value = list(values)
        return name

    def floats(self, value: float) -> str:
        """A ``Constant`` float32 scalar."""
        return self._constant("float", "float32", (), {"value_float": value})

    def _constant(
        self, label: str, dtype: str, shape: tuple[int, ...], value: dict[str, AttributeValue]
    ) -> str:
        itemsize = 8 if dtype == "int64" else 4
        made = self.ir.add_value(f"{self.at}/{label}", dtype, shape, math.prod(shape) * itemsize)
        self.ir.add_operator(
            Operator(
                self.ir.unique_name(f"{self.at}/Constant"),
                "Constant",
                outputs=[made.name],
                attributes=value,
            )
        )
        return made.name

    def split(self, tensor: Tensor, sizes: list[int], sizes_name: str, axis: int) -> list[str]:
        """``tensor`` split into ``sizes`` along ``axis``."""
        parts = []
        for index, size in enumerate(sizes):
            shape = resized(tensor.shape, axis, size)
            nbytes = tensor.nbytes // tensor.shape[axis] * size
            parts.append(
                self.ir.add_value(f"{tensor.name}/part{index}", tensor.dtype, shape, nbytes).name
            )
        self.ir.add_operator(
            Operator(
                self.ir.unique_name(f"{self.at}/Split"),
                "Split",
                inputs=[tensor.name, sizes_name],
                outputs=parts,
                attributes={"axis": axis},
            )
        )
        return parts
