"""Quantizers moved to :mod:`slimface.quant.quantizers`; these names stay importable here."""
from slimface.quant.quantizers import (BETA_MODES, DOREFA_H, QUANTIZERS, DorefaActivation,
                                       DorefaWeight, QuantConv2d, QuantLinear, Quantizer, SteSign,
                                       XnorWeight, activation_scale, create_quantizer,
                                       dorefa_activation, dorefa_weight, quantize_k, ste_sign,
                                       xnor_alpha, xnor_weight)

__all__ = ["BETA_MODES", "DOREFA_H", "QUANTIZERS", "DorefaActivation", "DorefaWeight",
           "QuantConv2d", "QuantLinear", "Quantizer", "SteSign", "XnorWeight", "activation_scale",
           "create_quantizer", "dorefa_activation", "dorefa_weight", "quantize_k", "ste_sign",
           "xnor_alpha", "xnor_weight"]
