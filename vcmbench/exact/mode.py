"""The exact-arithmetic mode: every torch operation either cannot depend on the machine or is refused.

`ExactArithmetic` is a TorchDispatchMode: it sees each aten operation a network, a codec or a
metric calls, and

- lets through the operations whose float result is the same on every IEEE machine: data
  movement, comparisons, max/min, and single correctly rounded operations (+, -, *, /, sqrt,
  round); torchvision's CPU `nms` and `roi_align` (scalar C++ compiled once for x86-64: a fixed
  order per output, no instruction-set dispatch);
- replaces the ones that are not: convolutions and matrix products by exact integer
  accumulation (`integer.py`), exp/log/sigmoid/softmax by fixed sequences of exact operations,
  sums and means by a fixed pairwise tree, batch norm, group norm and bilinear resampling by separate
  roundings (`functions.py`), top-k and sort by a stable sort (ties in index order);
- refuses any other operation on float tensors with one line naming it, so a new network or
  codec cannot quietly bring back machine-dependent numbers.

Operations on integer and boolean tensors are exact anyway and always pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import vcmbench.exact.functions as fn
import vcmbench.exact.integer as integer
from vcmbench.errors import ConfigError

# Single IEEE operations, data movement, comparisons and order-independent reductions (max, min).
_PASS = {
    "abs",
    "abs_",
    "alias",
    "amax",
    "amin",
    "any",
    "all",
    "arange",
    "argmax",
    "argmin",
    "as_strided",
    "bitwise_and",
    "bitwise_not",
    "bitwise_or",
    "cat",
    "ceil",
    "chunk",
    "clamp",
    "clamp_",
    "clamp_max",
    "clamp_max_",
    "clamp_min",
    "clamp_min_",
    "clone",
    "constant_pad_nd",
    "contiguous",
    "copy",
    "copy_",
    "detach",
    "detach_",
    "div",
    "div_",
    "empty",
    "empty_like",
    "empty_strided",
    "eq",
    "expand",
    "expand_as",
    "fill",
    "fill_",
    "flatten",
    "flip",
    "floor",
    "floor_",
    "frexp",
    "full",
    "full_like",
    "gather",
    "ge",
    "gt",
    "hardtanh",
    "hardtanh_",
    "index",
    "index_select",
    "is_nonzero",
    "isfinite",
    "isinf",
    "isnan",
    "item",
    "_local_scalar_dense",
    "le",
    "leaky_relu",
    "leaky_relu_",
    "lift_fresh",
    "lift_fresh_copy",
    "logical_and",
    "logical_not",
    "logical_or",
    "lt",
    "masked_fill",
    "masked_fill_",
    "masked_select",
    "max",
    "max_pool2d",
    "max_pool2d_with_indices",
    "maximum",
    "min",
    "minimum",
    "mul",
    "mul_",
    "nan_to_num",
    "nan_to_num_",
    "narrow",
    "ne",
    "neg",
    "neg_",
    "new_empty",
    "new_full",
    "new_ones",
    "new_zeros",
    "nonzero",
    "ones",
    "ones_like",
    "pad",
    "permute",
    "pixel_shuffle",
    "pixel_unshuffle",
    "reciprocal",
    "relu",
    "relu_",
    "repeat",
    "reshape",
    "resize_",
    "roll",
    "round",
    "round_",
    "scalar_tensor",
    "select",
    "select_scatter",
    "sign",
    "slice",
    "slice_scatter",
    "split",
    "split_with_sizes",
    "sqrt",
    "sqrt_",
    "squeeze",
    "squeeze_",
    "stack",
    "t",
    "to",
    "_to_copy",
    "transpose",
    "trunc",
    "unbind",
    "unflatten",
    "unsqueeze",
    "unsqueeze_",
    "upsample_nearest2d",
    "_unsafe_view",
    "view",
    "view_as",
    "where",
    "zero_",
    "zeros",
    "zeros_like",
    "meshgrid",
    "tensor_split",
    "_has_compatible_shallow_copy_type",
    "set_",
    "replication_pad2d",
    "reflection_pad2d",
    "avg_pool2d",
    "sym_size",
    "sym_stride",
    "sym_numel",
    "sym_storage_offset",
    "dim",
    "size",
    "stride",
    "numel",
    "is_same_size",
    "equal",
    "bucketize",
    "searchsorted",
    "resolve_conj",
    "resolve_neg",
    "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d",
    # random initialisation (a checkpoint then replaces it): uniform bits scaled, no arithmetic to reorder
    "uniform_",
    "random_",
    "repeat_interleave",
}
_PASS = {f"aten.{name}" for name in _PASS}
# the arithmetic of these is a fixed scalar loop per output on the CPU
_PASS_ON_CPU = {"torchvision.nms", "torchvision.roi_align"}
# index_put/scatter with accumulation adds in an order the kernel chooses
_ACCUMULATING = {"aten.index_put", "aten.index_put_", "aten._index_put_impl_"}


def _bind(func, args, kwargs) -> dict:
    """The call's arguments by name, defaults filled in (from the operation's schema)."""
    bound = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args):
            bound[arg.name] = args[i]
        elif arg.name in kwargs:
            bound[arg.name] = kwargs[arg.name]
        else:
            bound[arg.name] = arg.default_value if arg.has_default_value() else None
    return bound


def _conv2d(a):
    return integer.conv2d(a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["groups"])


def _convolution(a):
    if len(a["weight"].shape) != 4:
        raise _refusal(f"aten.convolution with a {a['weight'].dim()}-d weight")
    return _conv_transpose2d(a) if a["transposed"] else _conv2d(a)


def _conv_transpose2d(a):
    return integer.conv_transpose2d(
        a["input"], a["weight"], a["bias"], a["stride"], a["padding"], a["output_padding"], a["groups"], a["dilation"]
    )


def _sum(a):
    x = a["self"]
    out = fn.tree_sum64(x, fn.reduced_dims(x, a.get("dim")), bool(a.get("keepdim") or False))
    return out.to(a.get("dtype") or x.dtype)


def _mean(a):
    x = a["self"]
    dims = fn.reduced_dims(x, a.get("dim"))
    count = math.prod(x.shape[d] for d in dims)
    out = fn.tree_sum64(x, dims, bool(a.get("keepdim") or False)) / count
    return out.to(a.get("dtype") or x.dtype)


def _batch_norm(a):
    if a["training"]:
        raise _refusal("batch norm in training mode")
    return fn.batch_norm_eval(a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])


def _prod(a):
    x = a["self"]
    dims = fn.reduced_dims(x, a.get("dim"))
    return fn.tree_reduce64(x, dims, bool(a.get("keepdim") or False), product=True).to(a.get("dtype") or x.dtype)


def _vector_norm(a):
    """The Euclidean norm (`F.normalize`'s): squares summed in float64 by the fixed tree, one sqrt."""
    x, order = a["self"], a["ord"]
    if order != 2:
        raise _refusal(f"aten.linalg_vector_norm of order {order}")
    squares = fn.tree_sum64(x.to(torch.float64) ** 2, fn.reduced_dims(x, a.get("dim")), bool(a.get("keepdim")))
    return torch.sqrt(squares).to(a.get("dtype") or x.dtype)


def _grid_sample(a):
    if a["interpolation_mode"] != 0 or a["padding_mode"] != 0 or a["input"].dim() != 4:
        raise _refusal("grid_sample other than 2-d bilinear with zero padding")
    return fn.grid_sample_bilinear(a["input"], a["grid"], a["align_corners"])


def _pow(a):
    x, e = a["self"], a["exponent"]
    if isinstance(e, torch.Tensor):
        if not isinstance(x, torch.Tensor):
            x = torch.tensor(x, dtype=e.dtype, device=e.device)
        return fn.pow_tensor(x, e)
    if e == 2:
        return x * x
    if e == 1:
        return x.clone()
    if e == 0.5:
        return torch.sqrt(x)
    if e == -1:
        return 1.0 / x
    raise _refusal(f"aten.pow with exponent {e}")


# a + alpha * b: one fused multiply-add in ATen's vectorised kernels unless alpha is +-1
_ALPHA = {
    "aten.add": torch.add,
    "aten.add_": torch.add,
    "aten.sub": torch.sub,
    "aten.sub_": torch.sub,
    "aten.rsub": None,
}


def _with_alpha(func, args, kwargs):
    """add/sub/rsub with alpha other than +-1 as two roundings (multiply, then add), in place kept."""
    a = _bind(func, args, kwargs)
    alpha, self_, other = a["alpha"], a["self"], a["other"]
    name = str(func.overloadpacket)
    if name == "aten.rsub":
        return other - self_ * alpha
    scaled = other * alpha
    if name.endswith("_"):
        return func(self_, scaled)
    return _ALPHA[name](self_, scaled)


_REPLACE: dict[str, Callable[[dict], object]] = {
    "aten.conv2d": _conv2d,
    "aten.convolution": _convolution,
    "aten._convolution": _convolution,
    "aten.conv_transpose2d": _conv_transpose2d,
    "aten.linear": lambda a: integer.linear(a["input"], a["weight"], a["bias"]),
    "aten.matmul": lambda a: integer.matmul(a["self"], a["other"]),
    "aten.mm": lambda a: integer.matmul(a["self"], a["mat2"]),
    "aten.bmm": lambda a: integer.matmul(a["self"], a["mat2"]),
    "aten.addmm": lambda a: integer.addmm(a["self"], a["mat1"], a["mat2"], beta=a["beta"], alpha=a["alpha"]),
    "aten.exp": lambda a: fn.exp(a["self"]),
    "aten.log": lambda a: fn.log(a["self"]),
    "aten.log2": lambda a: fn.log2(a["self"]),
    "aten.sigmoid": lambda a: fn.sigmoid(a["self"]),
    "aten.tanh": lambda a: fn.tanh(a["self"]),
    "aten.softmax": lambda a: fn.softmax(a["self"], a["dim"], a.get("dtype")),
    "aten._softmax": lambda a: fn.softmax(a["self"], a["dim"]),
    "aten.log_softmax": lambda a: fn.log_softmax(a["self"], a["dim"], a.get("dtype")),
    "aten._log_softmax": lambda a: fn.log_softmax(a["self"], a["dim"]),
    "aten.sum": _sum,
    "aten.mean": _mean,
    "aten.batch_norm": _batch_norm,
    "aten._native_batch_norm_legit_no_training": lambda a: (
        fn.batch_norm_eval(a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"]),
        torch.empty(0),
        torch.empty(0),
    ),
    "aten.group_norm": lambda a: fn.group_norm(a["input"], a["num_groups"], a["weight"], a["bias"], a["eps"]),
    "aten.native_group_norm": lambda a: (  # what group_norm becomes outside inference mode
        fn.group_norm(a["input"], a["group"], a["weight"], a["bias"], a["eps"]),
        torch.empty(0),
        torch.empty(0),
    ),
    "aten.upsample_bilinear2d": lambda a: fn.upsample_bilinear2d(
        a["input"], a.get("output_size"), a["align_corners"], a.get("scale_factors")
    ),
    # .vec (input, output_size, align_corners, scale_factors) and .default (self, ..., scales_h, scales_w)
    "aten.upsample_bicubic2d": lambda a: fn.upsample_bicubic2d(
        a["input"] if "input" in a else a["self"],
        a.get("output_size"),
        a["align_corners"],
        a.get("scale_factors") or (a.get("scales_h"), a.get("scales_w")),
    ),
    "aten.grid_sampler": lambda a: _grid_sample(a),
    "aten.grid_sampler_2d": lambda a: _grid_sample(a),
    "aten.topk": lambda a: fn.topk(a["self"], int(a["k"]), a["dim"], a["largest"], a["sorted"]),
    "aten.argsort": lambda a: torch.sort(a["self"], dim=a["dim"], descending=a["descending"], stable=True).indices,
    "aten.sort": lambda a: torch.sort(a["self"], dim=a["dim"], descending=a["descending"], stable=True),
    "aten.pow": _pow,
    "aten.linalg_vector_norm": _vector_norm,
    "aten.prod": _prod,
    "aten.rsqrt": lambda a: 1.0 / torch.sqrt(a["self"]),
    "aten.square": lambda a: a["self"] * a["self"],
}


def _refusal(what: str) -> ConfigError:
    return ConfigError(
        f"determinism=exact: {what} on float tensors can give different bits on different machines and has no "
        "exact version in vcmbench/exact/; add one there (or refuse the network), or run with determinism=loose"
    )


def _has_float(values) -> bool:
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.is_floating_point() or v.is_complex():
                return True
        elif isinstance(v, (list, tuple)) and _has_float(v):
            return True
    return False


def _on_cpu(values) -> bool:
    return all(v.device.type == "cpu" for v in values if isinstance(v, torch.Tensor))


class ExactArithmetic(TorchDispatchMode):
    """Every float operation inside it gives the same bits on any machine, or raises (ConfigError)."""

    def __init__(self):
        super().__init__()
        self._decided: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self._decided.get(func)
        if kind is None:
            kind = self._decided[func] = _kind(func)
        if kind == "pass":
            return func(*args, **kwargs)
        if kind == "replace":
            if not _has_float([*args, *kwargs.values()]):  # integer sums, sorts, products: exact as they are
                return func(*args, **kwargs)
            return _REPLACE[str(func.overloadpacket)](_bind(func, args, kwargs))
        if kind == "alpha":
            alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
            if alpha in (1, -1):
                return func(*args, **kwargs)
            return _with_alpha(func, args, kwargs)
        values = [*args, *kwargs.values()]
        if not _has_float(values):
            return func(*args, **kwargs)
        if kind == "cpu" and _on_cpu(values):
            return func(*args, **kwargs)
        if kind == "accumulate" and not _bind(func, args, kwargs).get("accumulate"):
            return func(*args, **kwargs)
        raise _refusal(f"the operation {func}")


def _kind(func) -> str:
    name = str(func.overloadpacket)
    if name in _REPLACE:
        return "replace"
    if name in _PASS:
        return "pass"
    if name in _ALPHA:
        return "alpha"
    if name in _PASS_ON_CPU:
        return "cpu"
    if name in _ACCUMULATING:
        return "accumulate"
    return "check"
