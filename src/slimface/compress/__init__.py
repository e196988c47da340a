"""Compression: product quantization (``pq``), and the binary / k-bit QAT names re-exported
from :mod:`slimface.quant` and :mod:`slimface.models.quantized`. Distillation is the
``distill`` objective of :mod:`slimface.train` (``compress.distill`` only says so).

The ``quantized`` backbone (``create_backbone("quantized", base="face_resnet_c",
scheme="xnor", ...)``) is registered by :mod:`slimface.models`, like every backbone.
"""
from slimface.models.quantized import create_quantized_backbone
from slimface.quant import (QUANTIZERS, SCHEMES, DorefaActivation, DorefaWeight, QuantConv2d,
                            QuantLinear, SteSign, XnorWeight, create_quantizer, dorefa_activation,
                            dorefa_weight, quantize_k, quantize_model, ste_sign, xnor_weight)

__all__ = ["SCHEMES", "QUANTIZERS", "DorefaActivation", "DorefaWeight", "QuantConv2d",
           "QuantLinear", "SteSign", "XnorWeight", "create_quantized_backbone",
           "create_quantizer", "dorefa_activation", "dorefa_weight", "quantize_k",
           "quantize_model", "ste_sign", "xnor_weight"]
