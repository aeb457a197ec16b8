"""Module and Parameter with PyTorch's registration, naming, ``repr`` and ``state_dict`` rules."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np

from graphnn import flat, guard, trace
from graphnn import pointwise as pw
from graphnn.checkpoint import StateDictError
from graphnn import recording
from graphnn.eager import constant, is_grad_enabled
from graphnn.tensors import Parameter, Tensor, zero_grads


def _no_compiler(module: "Module", args: tuple, kwargs: dict) -> Any:
    raise TypeError(f"calling {type(module).__name__} on arrays compiles it, which needs graphnn.api imported")


eager_call: Callable[["Module", tuple, dict], Any] = _no_compiler
"""How a Module with parameters or buffers runs when called outside tracing (on arrays or
tensors): graphnn.api sets it to compile the module into a cached inference program. nn sits
below the compiler, so it is told rather than importing it."""


class Module:
    """Base class of all layers: registers parameters, buffers and submodules by attribute."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ---------------------------------------------------------------------
    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if guard.recording is not None and name[0] != "_" and name in object.__getattribute__(self, "__dict__"):
            guard.record_read(self, name, value)  # a traced forward depends on this value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign attributes before Module.__init__() is called")
        guard.changed()
        if isinstance(value, (Parameter, Module)):
            table = self._parameters if isinstance(value, Parameter) else self._modules
            self._forget(name, keep=table)
            table[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                expected = "Parameter" if name in self._parameters else "Module"
                raise TypeError(f"cannot assign {type(value).__name__} as {name!r} ({expected} or None expected)")
            (self._parameters if name in self._parameters else self._modules)[name] = None
        elif name in self._buffers:
            self._buffers[name] = None if value is None else _buffer_array(value)
            _note_bool(self, name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: dict | None = None) -> None:
        """Remove ``name`` from the instance and every table but ``keep``, where a new value
        then replaces the old one in place (``model[1] = nn.Tanh()`` keeps position 1)."""
        guard.changed()  # a parameter, buffer or submodule is (re)registered
        self.__dict__.pop(name, None)
        for table in (self._parameters, self._buffers, self._modules):
            if table is not keep:
                table.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                value = d[table][name]
                if table == "_buffers":
                    recording.flush()
                    flat.host_access(value)
                    tracer = trace.active()
                    boolean = name in d.get("_bool_buffers", ())
                    if value is not None and tracer is not None and tracer.has_buffer(value):
                        return _traced_buffer(tracer, value, boolean)
                    if value is not None and tracer is None:
                        return _buffer_tensor(value, boolean)
                return value
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        guard.changed()
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r}: expected a Parameter or None")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """A persistent array that is not trained (BatchNorm's running statistics)."""
        if "." in name or name == "":
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        self._forget(name, keep=self._buffers)
        self._buffers[name] = None if tensor is None else _buffer_array(tensor, copy=True)
        _note_bool(self, name, tensor)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if "." in name or name == "":
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    register_module = add_module

    # -- calling ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the required \"forward\" function")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = trace.active()
        if tracer is None:
            if _records(self, args, kwargs):
                return _tape_of(args, kwargs).forward(self, args, kwargs)  # into this iteration's tape
            if not self._parameters and not self._buffers and not self._modules and _all_tensors(args, kwargs):
                return self.forward(*args, **kwargs)  # a loss or an activation: evaluated op by op
            recording.flush()  # the program reads the buffers recorded work may still update
            return eager_call(self, args, kwargs)
        with tracer.scope(self):
            return self.forward(*args, **kwargs)

    # -- traversal -------------------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            yield from module.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, table: str, prefix: str, recurse: bool):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        recording.flush()
        for name, b in self._named_members("_buffers", prefix, recurse):
            flat.host_access(b)
            yield name, b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- state ------------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name, as tensors sharing their storage
        (``keep_vars``: the Parameters themselves)."""
        out = OrderedDict() if destination is None else destination
        recording.flush()
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.data
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                flat.host_access(b)
                out[prefix + name] = b if keep_vars else _buffer_tensor(b)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays (numpy, or anything ``np.asarray`` takes) into parameters and buffers in place.
        Every key, shape and dtype is checked first: on a StateDictError (a RuntimeError, as in
        PyTorch) nothing was changed."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        keys = [k for k in state_dict if not isinstance(k, str)]
        if keys:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                                 f"keys must be strings, got {keys[0]!r} ({type(keys[0]).__name__}).")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = self._unexpected_keys(state_dict, own)
        errors = []
        if strict and (missing or unexpected):
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        staged = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            current = target.array if isinstance(target, Parameter) else target
            try:
                value = np.asarray(state_dict[key])
            except (TypeError, ValueError) as error:
                errors.append(f"cannot read {key} as an array of shape {current.shape}: {error}")
                continue
            if value.dtype.kind not in "biuf":
                errors.append(f"dtype mismatch for {key}: copying an array of dtype {value.dtype} from checkpoint, "
                              f"the model holds {current.dtype} (expected booleans or real numbers).")
                continue
            if value.shape != current.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {value.shape} from checkpoint, "
                    f"the shape in current model is {current.shape}."
                )
                continue
            staged.append((current, value.astype(current.dtype, copy=False)))
        if errors:
            raise StateDictError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors)
            )
        for current, value in staged:  # same shapes and dtypes: these copies cannot fail
            current[...] = value
        return _IncompatibleKeys(missing, unexpected)

    def _unexpected_keys(self, state_dict, own) -> list:
        """Keys that name nothing in the model, listed module by module as PyTorch does."""
        modules = list(self.named_modules())
        out = []
        for path, module in modules:
            prefix = path + "." if path else ""
            for key in state_dict:
                if key in own or not key.startswith(prefix):
                    continue
                head = key[len(prefix):].split(".", 1)[0]
                if "." not in key[len(prefix):] or module._modules.get(head) is None:
                    out.append(key)
        return list(dict.fromkeys(out))

    # -- modes --------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        set_modes([(m, mode) for m in self.modules()])
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- devices and dtypes ------------------------------------------------------------------------
    def to(self, *args, **kwargs) -> "Module":
        """``to(device)``: run this module's programs on that device's backend (Triton for
        "cuda", C for "cpu"); ``to(dtype)``: float32 only (every backend computes in it).
        Returns the module, as PyTorch's."""
        from graphnn import dtypes
        from graphnn.device import device as as_device

        for value in list(args) + [kwargs.get("device"), kwargs.get("dtype")]:
            if value is None or isinstance(value, bool):
                continue
            if isinstance(value, Tensor):
                value = value.dtype
            if isinstance(value, dtypes.dtype) or value in (float, int):
                if dtypes.as_dtype(value) is not dtypes.float32:
                    raise TypeError(f"Module.to({dtypes.as_dtype(value)!r}): graphnn modules compute in float32; "
                                    "keep the model in torch.float32")
                continue
            target = as_device(value)
            target.check_tensor_placement()
            for m in self.modules():
                if m.__dict__.get("_backend") != target.backend:
                    object.__setattr__(m, "_backend", target.backend)
                    for program in ("_eager_program", "_eager_static_program"):  # built for the old backend
                        m.__dict__.pop(program, None)
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, device=None) -> "Module":
        return self.to("cuda" if device is None else device)

    def float(self) -> "Module":
        return self

    def double(self) -> "Module":
        return self.to(float64_dtype())

    def half(self) -> "Module":
        raise TypeError("Module.half(): graphnn modules compute in float32; float16 is not supported")

    def type(self, dst_type) -> "Module":
        return self.to(dst_type)

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads(self.parameters(), set_to_none)

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, module in self._modules.items():
            text = _indent(repr(module), 2)
            lines.append(f"({name}): {text}")
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(self._parameters) | set(self._buffers) | set(self._modules))


def set_modes(flags: list) -> None:
    """Set each module's train/eval flag, (module, flag) each (not a guarded attribute change:
    every program's signature holds the modes), and tell graphnn.guard they moved."""
    for m, flag in flags:
        object.__setattr__(m, "training", flag)
    guard.modes_changed()


def _records(module: "Module", args: tuple, kwargs: dict) -> bool:
    """Whether a call outside tracing is recorded for backward: grad mode is on and a parameter
    or an input requires grad (PyTorch would build an autograd graph)."""
    if not is_grad_enabled():
        return False
    tensors = False
    for v in args:
        if isinstance(v, Tensor):
            if v._requires_grad:  # (the property's value, read directly: every call asks)
                return True
            tensors = True
    if kwargs and any(isinstance(v, Tensor) and v.requires_grad for v in kwargs.values()):
        return True
    if not tensors:
        return False
    # remembered until a module changes (requires_grad moves the version); read past __getattribute__
    cached = object.__getattribute__(module, "__dict__").get("_trains")
    if cached is None or cached[0] != guard.version:
        cached = (guard.version, any(p.requires_grad for p in module.parameters()))
        object.__setattr__(module, "_trains", cached)
    return cached[1]


def _tape_of(args: tuple, kwargs: dict) -> "recording.Tape":
    """The tape a call records into: its recorded arguments' (a loss on a model's output), else the
    current one."""
    for value in (*args, *kwargs.values()) if kwargs else args:
        tape = getattr(value, "_tape", None)
        if tape is not None and value._node.id not in tape.freed:
            return tape
    return recording.current(module_call=True)


def float64_dtype():
    from graphnn import dtypes

    return dtypes.float64


def _all_tensors(args: tuple, kwargs: dict) -> bool:
    values = list(args) + list(kwargs.values())
    return bool(values) and all(isinstance(v, Tensor) or not isinstance(v, np.ndarray) for v in values) and \
        any(isinstance(v, Tensor) for v in values)


def _traced_buffer(tracer: Any, array: np.ndarray, boolean: bool) -> Tensor:
    """A buffer read inside a traced forward: a tensor of its leaf (the value an earlier forward
    of the same tape updated it to), as PyTorch's buffers are tensors (``self.bias[:, :, :T, :T]``,
    ``mask == 0``), holding on to its array, which updates name it by (graphnn.trace.storage). A
    buffer registered from bools, stored as int64, is read as bools (a mask for ``masked_fill``)."""
    node = tracer.buffer(array)
    t = Tensor(tracer.builder.pointwise(pw.to_bool, node, dtype="bool") if boolean else node)
    t._buffer = array
    return t


def _note_bool(module: "Module", name: str, value: Any) -> None:
    """Remember which buffers were given as bools: they are stored as int64 (every backend binds
    buffers of its compute dtypes) and read back as bools inside a traced forward."""
    flags = module.__dict__.get("_bool_buffers")
    if flags is None:
        flags = set()
        object.__setattr__(module, "_bool_buffers", flags)
    if isinstance(value, Tensor):
        boolean = value.dtype.name == "bool"
    else:
        boolean = value is not None and np.asarray(value).dtype == np.bool_
    (flags.add if boolean else flags.discard)(name)


def _buffer_tensor(array: np.ndarray, boolean: bool = False) -> Tensor:
    """A buffer as a tensor sharing its memory, as PyTorch's buffers are tensors (in-place writes
    reach the module); one registered from bools (stored as int64) as a bool copy."""
    if boolean:
        return Tensor(constant(array.astype(bool), "bool"))
    return Tensor(constant(array, "i64" if array.dtype.kind in "iu" else ("bool" if array.dtype.kind == "b" else "f32")))


def _buffer_array(value: Any, copy: bool = False) -> np.ndarray:
    """A buffer as graphnn stores it: floating arrays in float32 (the dtype every backend
    computes in), integer arrays in int64, C-contiguous."""
    if isinstance(value, Tensor):
        value = value.array
    array = np.array(value, copy=copy) if copy else np.asarray(value)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iub" and array.dtype != np.int64:
        array = array.astype(np.int64)
    return array if array.flags.c_contiguous else np.array(array, order="C")  # (keeps 0-d arrays 0-d)


class _IncompatibleKeys:
    def __init__(self, missing_keys: list, unexpected_keys: list) -> None:
        self.missing_keys, self.unexpected_keys = missing_keys, unexpected_keys

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


def _indent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])
