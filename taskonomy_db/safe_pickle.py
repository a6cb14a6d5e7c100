"""An unpickler that builds numpy dtypes, scalars and arrays, and nothing else, for files nobody vouches for.

Refusing every other global is not enough: numpy's own constructors are unsafe on crafted arguments.
- An object dtype makes numpy read bytes from the file as PyObject pointers, a crash (or worse) as soon as an
  element is read or the array freed; it can arrive as a dtype call, a string such as 'O' given straight to
  `ndarray`, or an array's pickled state. Every path that builds an array or scalar converts its dtype and
  checks it there.
- A dtype's `__setstate__` (the BUILD opcode) can give a checked dtype object flags after the check, and the
  same dtype object may already be inside an array. BUILD on a dtype is therefore allowed only with the state
  numpy itself writes for that dtype, which changes nothing; BUILD on anything but a dtype or an array is refused.
- A declared shape can ask for terabytes. An array's or scalar's data must come from the file, so all the bytes
  they allocate together may not exceed the file's size.

The pure-Python unpickler is used because only it lets BUILD be intercepted; the released files take milliseconds.
"""

from __future__ import annotations

import io
import math
import operator
import pickle
from typing import Any

import numpy as np

try:  # numpy >= 2 moved the module; the pickles name the old path
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar


def _checked(dtype: np.dtype) -> np.dtype:
    if dtype.hasobject or dtype.kind == "O":
        raise pickle.UnpicklingError(
            f"{dtype!r} holds Python objects: refused, it would read bytes from the file as pointers to objects"
        )
    return dtype


def _as_dtype(spec: Any) -> np.dtype:
    """The dtype an array or scalar constructor would use for `spec`, checked."""
    return _checked(spec if isinstance(spec, np.dtype) else np.dtype(spec))


def _shape(shape: Any) -> tuple[int, ...]:
    dims = shape if isinstance(shape, tuple | list) else (shape,)
    try:
        dims = tuple(operator.index(d) for d in dims)
    except TypeError:
        raise pickle.UnpicklingError(f"array shape {shape!r} is not a tuple of integers") from None
    if any(d < 0 for d in dims):
        raise pickle.UnpicklingError(f"array shape {dims} has a negative dimension")
    return dims


class _NumpyOnlyUnpickler(pickle._Unpickler):
    """Resolves exactly numpy's dtype, scalar, ndarray and _reconstruct, each through a checking wrapper."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.budget = len(data)  # bytes arrays and scalars may still allocate
        self.size = len(data)
        self.ndarray = self.make_ndarray  # one bound method, so `reconstruct` can tell it by identity
        # Arrays `reconstruct` made and BUILD has not yet filled: each is filled once. A second BUILD would free
        # the data of an array that another array's view (numpy.ndarray over it as a buffer) still points at.
        self.unfilled: set[int] = set()
        self.made: list[np.ndarray] = []  # keeps them alive, so an id is never reused while it is in `unfilled`
        self.allowed = {
            ("numpy", "dtype"): self.make_dtype,
            ("numpy", "ndarray"): self.ndarray,
            ("numpy.core.multiarray", "scalar"): self.make_scalar,
            ("numpy._core.multiarray", "scalar"): self.make_scalar,
            ("numpy.core.multiarray", "_reconstruct"): self.reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self.reconstruct,
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None

    def allocate(self, what: str, nbytes: int) -> None:
        if nbytes > self.budget:
            before = self.size - self.budget
            also = f" (after {before} bytes for earlier arrays and scalars)" if before else ""
            raise pickle.UnpicklingError(
                f"{what} needs {nbytes} bytes{also}, more than the {self.size}-byte file holds:"
                " its data must come from the file"
            )
        self.budget -= nbytes

    def reserve_array(self, shape: Any, dtype: np.dtype) -> tuple[int, ...]:
        dims = _shape(shape)
        self.allocate(f"an array of shape {dims} and dtype {dtype}", math.prod(dims) * dtype.itemsize)
        return dims

    # -- the globals a pickle may call ------------------------------------------------------------------

    def make_dtype(self, spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
        return _checked(np.dtype(spec, align=bool(align), copy=bool(copy)))

    def make_scalar(self, dtype: Any, *args: Any) -> Any:
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"numpy scalar with dtype {dtype!r}: expected a dtype")
        self.allocate(f"a scalar of dtype {dtype}", _checked(dtype).itemsize)
        return scalar(dtype, *args)

    def make_ndarray(self, shape: Any, dtype: Any = float, buffer: Any = None, *rest: Any) -> np.ndarray:
        dtype = _as_dtype(dtype)
        if buffer is not None and not isinstance(buffer, bytes):
            # Only immutable bytes from the file: a view of another array or of a bytearray would share memory
            # that a later BUILD could free or change under it.
            raise pickle.UnpicklingError(f"an array over a {type(buffer).__name__} buffer refused (bytes only)")
        if buffer is None:
            self.reserve_array(shape, dtype)
        elif math.prod(_shape(shape)) * dtype.itemsize > self.size:  # a view of the buffer: numpy bounds-checks it
            raise pickle.UnpicklingError(f"an array of shape {shape} and dtype {dtype} is larger than the file")
        return np.ndarray(shape, dtype, buffer, *rest)

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not self.ndarray:
            raise pickle.UnpicklingError("array reconstruction of anything but numpy.ndarray refused")
        dtype = _as_dtype(dtype)
        array = _reconstruct(np.ndarray, self.reserve_array(shape, dtype), dtype)
        self.unfilled.add(id(array))
        self.made.append(array)
        return array

    # -- BUILD ------------------------------------------------------------------------------------------

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, np.dtype):
            # The release BUILDs every dtype with the state numpy wrote for it: a no-op, and the only one allowed.
            if not isinstance(state, tuple) or state != target.__reduce__()[2]:
                raise pickle.UnpicklingError(f"BUILD would change dtype {target}: refused")
        elif type(target) is np.ndarray and id(target) in self.unfilled:
            self.unfilled.discard(id(target))
            target.__setstate__(self.array_state(state))
        elif type(target) is np.ndarray:
            raise pickle.UnpicklingError("BUILD of an array that was not freshly reconstructed, or twice, refused")
        else:
            raise pickle.UnpicklingError(f"BUILD on {type(target).__name__} is not allowed")

    def array_state(self, state: Any) -> tuple:
        # numpy writes (version, shape, dtype, is_fortran, data); older numpy left out the version.
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        shape, dtype, fortran, data = state[-4:]
        if not isinstance(dtype, np.dtype) or not isinstance(data, bytes):
            raise pickle.UnpicklingError("an array state needs a dtype and raw bytes (object arrays pickle a list)")
        _checked(dtype)
        self.reserve_array(shape, dtype)
        return (*state[:-4], shape, dtype, fortran, data)

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle `data` allowing only checked numpy dtypes, scalars and arrays.

    Raises pickle.UnpicklingError (or the error numpy raises on a malformed argument) on anything else."""
    return _NumpyOnlyUnpickler(data).load()
