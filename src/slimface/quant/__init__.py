"""Quantizer primitives shared by training and deployment: quantizer functions and modules
(``quantizers``: sign with a straight-through gradient, XNOR, DoReFa), the quantized layers
``QuantConv2d`` / ``QuantLinear``, and ``quantize_model`` (``qat``), which swaps a float
network's layers for them.

This package sits below ``models``, ``compress`` and ``runtime``: QAT (``compress``) and the
deploy form of quantized layers (``runtime.binary``) both build on it.
"""
from slimface.quant.qat import SCHEMES, default_keep_float, quantize_model, quantized_layers
from slimface.quant.quantizers import (QUANTIZERS, DorefaActivation, DorefaWeight, QuantConv2d,
                                       QuantLinear, SteSign, XnorWeight, activation_scale,
                                       create_quantizer, dorefa_activation, dorefa_weight,
                                       quantize_k, ste_sign, xnor_weight)

__all__ = ["SCHEMES", "QUANTIZERS", "DorefaActivation", "DorefaWeight", "QuantConv2d",
           "QuantLinear", "SteSign", "XnorWeight", "activation_scale", "create_quantizer",
           "default_keep_float", "dorefa_activation", "dorefa_weight", "quantize_k",
           "quantize_model", "quantized_layers", "ste_sign", "xnor_weight"]
