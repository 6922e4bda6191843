"""The one place where ``captum_prior`` touches Captum's private helpers.

Captum keeps everything outside ``captum.attr.__all__`` private and has moved
such helpers between releases (``_format_input`` was removed in #906,
``ExpansionTypes`` moved in #1139).  Every private import is gathered here so
that a Captum upgrade breaks one file, not the package.  Tested against
captum 0.9.0.
"""

from captum._utils.common import (  # noqa: F401
    _format_additional_forward_args,
    _format_output,
    _is_tuple,
)
from captum._utils.models.model import Model  # noqa: F401
from captum._utils.typing import (  # noqa: F401
    BaselineType,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
)
from captum.attr._core.lime import construct_feature_mask  # noqa: F401
from captum.attr._utils.approximation_methods import (  # noqa: F401
    SUPPORTED_METHODS,
    approximation_parameters,
)
from captum.attr._utils.common import _format_callable_baseline  # noqa: F401

__all__ = [
    "BaselineType",
    "Model",
    "SUPPORTED_METHODS",
    "approximation_parameters",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "construct_feature_mask",
    "_format_additional_forward_args",
    "_format_callable_baseline",
    "_format_output",
    "_is_tuple",
]
