"""What every importer shares: collecting nodes and weights, fusing PReLU, building GraphNet."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from slimface.errors import ModelFileError
from slimface.models.graph import GraphNet


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unsupported(path: Path, ops: Sequence[str], fmt: str) -> ModelFileError:
    """The error for operators slimface cannot import, naming each one and the file."""
    return ModelFileError(f"{path}: unsupported {fmt} operator(s): {', '.join(sorted(set(ops)))}"
                          " (slimface imports float face-embedding networks built from "
                          "convolutions, dense layers, activations and elementwise ops)")


@dataclass
class GraphBuilder:
    """Nodes in execution order plus the tensors they own (state-dict keys of GraphNet)."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    consts: dict[str, list[int]] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    modules: int = 0

    def module_key(self) -> str:
        """A fresh ``layers.<key>`` name (never reused, whatever nodes are removed later)."""
        self.modules += 1
        return f"n{self.modules - 1}"

    def const(self, value: np.ndarray) -> str:
        """Store a constant operand; returns the node-input name that refers to it."""
        key = f"c{len(self.consts)}"
        array = np.ascontiguousarray(value, dtype=np.float32)
        self.consts[key] = list(array.shape)
        self.state[f"consts.{key}"] = array
        return f"const:{key}"

    def node(self, op: str, inputs: Sequence[str], output: str,
             attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        n = {"op": op, "inputs": list(inputs), "output": output, "attrs": dict(attrs or {})}
        self.nodes.append(n)
        return n

    def module_node(self, op: str, inputs: Sequence[str], output: str, attrs: Mapping[str, Any],
                    weights: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """A node owning an ``nn.Module`` (conv, linear, prelu, batchnorm) and its weights."""
        n = self.node(op, inputs, output, attrs)
        n["module"] = self.module_key()
        for name, value in weights.items():
            self.state[f"layers.{n['module']}.{name}"] = np.ascontiguousarray(value,
                                                                              dtype=np.float32)
        return n

    def fuse_prelu(self) -> int:
        """Rewrite ``relu(x) + c * (x - |x|)`` (how TensorFlow exports PReLU) as one PReLU
        with slope ``2 c``; returns how many were fused. Exactness: for x < 0 the sum is
        ``2 c x``, for x >= 0 it is ``x``."""
        uses: dict[str, int] = {}
        for n in self.nodes:
            for name in n["inputs"]:
                uses[name] = uses.get(name, 0) + 1
        by_output = {n["output"]: n for n in self.nodes}
        fused = 0
        for add in [n for n in self.nodes if n["op"] == "add"
                    and n["attrs"].get("activation", "none") == "none"]:
            match = self._prelu_parts(add, by_output, uses)
            if match is None:
                continue
            x, slope_key, parts = match
            slope = self.state.pop(f"consts.{slope_key}").reshape(-1) * 2.0
            del self.consts[slope_key]
            add.update(op="prelu", inputs=[x], attrs={"channels": int(slope.size)},
                       module=self.module_key())
            self.state[f"layers.{add['module']}.weight"] = slope.astype(np.float32)
            self.nodes = [n for n in self.nodes if not any(n is p for p in parts)]
            fused += 1
        return fused

    @staticmethod
    def _prelu_parts(add: dict[str, Any], by_output: Mapping[str, dict[str, Any]],
                     uses: Mapping[str, int]) -> tuple[str, str, list[dict]] | None:
        ins = [by_output.get(i) for i in add["inputs"]]
        if any(n is None for n in ins):
            return None
        relu = next((n for n in ins if n["op"] == "relu"), None)
        mul = next((n for n in ins if n["op"] == "mul"), None)
        if relu is None or mul is None or mul["attrs"].get("activation", "none") != "none":
            return None
        x = relu["inputs"][0]
        consts = [i for i in mul["inputs"] if i.startswith("const:")]
        others = [by_output.get(i) for i in mul["inputs"] if not i.startswith("const:")]
        if len(consts) != 1 or len(others) != 1 or others[0] is None:
            return None
        sub = others[0]
        if sub["op"] != "sub" or sub["inputs"][0] != x or sub["attrs"].get("activation",
                                                                           "none") != "none":
            return None
        absn = by_output.get(sub["inputs"][1])
        if absn is None or absn["op"] != "abs" or absn["inputs"][0] != x:
            return None
        parts = [relu, mul, sub, absn]
        if any(uses.get(p["output"], 0) != 1 for p in parts):
            return None
        return x, consts[0][len("const:"):], parts

    def build(self, input_name: str, output_name: str, **contract: Any) -> GraphNet:
        """A GraphNet with every weight loaded (strict: a missing tensor is a bug here)."""
        model = GraphNet({"input": input_name, "output": output_name, "nodes": self.nodes},
                         self.consts, **contract)
        state = {k: torch.from_numpy(np.array(v)) for k, v in self.state.items()}
        expected = model.state_dict()
        for key in ("pixel_mean", "pixel_std"):
            state[key] = expected[key]
        for key, value in list(state.items()):
            if key in expected and expected[key].shape != value.shape:
                state[key] = value.reshape(expected[key].shape)
        model.load_state_dict(state, strict=True)
        return model.eval()
