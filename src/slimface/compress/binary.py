"""Binary / k-bit QAT moved to :mod:`slimface.quant.qat` (``quantize_model``) and
:mod:`slimface.models.quantized` (the ``quantized`` backbone); these names stay importable."""
from slimface.models.quantized import create_quantized_backbone
from slimface.quant.qat import (FLOAT_BITS, SCHEMES, default_keep_float, quantize_model,
                                quantized_layers)

__all__ = ["FLOAT_BITS", "SCHEMES", "create_quantized_backbone", "default_keep_float",
           "quantize_model", "quantized_layers"]
