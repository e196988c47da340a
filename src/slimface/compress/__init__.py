"""Compression: quantizers and quantized layers, ``quantize_model`` (binary / k-bit QAT).

Importing this package also registers the ``quantized`` backbone (``create_backbone(
"quantized", base="face_resnet_c", scheme="xnor", ...)``) so QAT runs from a config.
"""
from slimface.compress.binary import SCHEMES, create_quantized_backbone, quantize_model
from slimface.compress.quantizers import (QUANTIZERS, DorefaActivation, DorefaWeight,
                                          QuantConv2d, QuantLinear, SteSign, XnorWeight,
                                          create_quantizer, dorefa_activation, dorefa_weight,
                                          quantize_k, ste_sign, xnor_weight)

__all__ = ["SCHEMES", "QUANTIZERS", "DorefaActivation", "DorefaWeight", "QuantConv2d",
           "QuantLinear", "SteSign", "XnorWeight", "create_quantized_backbone",
           "create_quantizer", "dorefa_activation", "dorefa_weight", "quantize_k",
           "quantize_model", "ste_sign", "xnor_weight"]
