"""tierplan's core: IR, ONNX frontend, target model, pass manager, plan I/O, evaluator, CLI.

The public API is re-exported here; passes live in :mod:`tierplan.passes`.
"""

from tierplan.compiler.api import CompileResult, compile_model, default_pipeline
from tierplan.compiler.errors import InputError, PassFailure, PipelineError, TierplanError
from tierplan.compiler.evaluation import Evaluation
from tierplan.compiler.ir import IRGraph, ModelInfo, Operator, Tensor, Tiles
from tierplan.compiler.pass_manager import (
    Bounds,
    Pass,
    PassContext,
    PassInstrument,
    PassResult,
    PostconditionError,
    ResultPass,
    register_pass,
    registered_passes,
)
from tierplan.compiler.target import Target, Tier, load_target
from tierplan.compiler.validate import Violation, validate_plan

__all__ = [
    "Bounds",
    "CompileResult",
    "Evaluation",
    "IRGraph",
    "InputError",
    "ModelInfo",
    "Operator",
    "Pass",
    "PassContext",
    "PassFailure",
    "PassInstrument",
    "PassResult",
    "PipelineError",
    "PostconditionError",
    "ResultPass",
    "Target",
    "Tensor",
    "Tier",
    "TierplanError",
    "Tiles",
    "Violation",
    "compile_model",
    "default_pipeline",
    "load_target",
    "register_pass",
    "registered_passes",
    "validate_plan",
]
