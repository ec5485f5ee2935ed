"""The ground truth: ONNX Runtime on the whole, unplanned model, with the same values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper
from tierplan.compiler.errors import InputError
from tierplan.compiler.execution.kernels import ValueType


def reference_values(
    model: onnx.ModelProto,
    weights: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    exposed: Iterable[tuple[str, ValueType]] = (),
) -> dict[str, np.ndarray]:
    """The graph outputs (and the ``exposed`` intermediate values) ONNX Runtime computes.

    ``model`` is not changed: the run uses a copy whose initializers hold ``weights``
    and whose outputs include ``exposed``.
    """
    import onnxruntime

    runnable = onnx.ModelProto()
    runnable.CopyFrom(model)
    graph = runnable.graph
    del graph.initializer[:]
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray(weights[t.name]), t.name)
        for t in model.graph.initializer
    )
    known = {o.name for o in graph.output}
    graph.output.extend(value.info(name) for name, value in exposed if name not in known)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        session = onnxruntime.InferenceSession(
            runnable.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in graph.output]
        results = session.run(names, dict(inputs))
    except Exception as error:
        text = str(error).strip().splitlines()
        raise InputError(
            f"onnxruntime cannot run the model as a reference: {text[0] if text else error!r}"
        ) from None
    return dict(zip(names, (np.asarray(r) for r in results), strict=True))
