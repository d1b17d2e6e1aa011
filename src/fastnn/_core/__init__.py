"""The compiled core: Cython kernels that run without the GIL.

Nothing here is public API; `fastnn.ops.CompiledOps` is the boundary that checks
shapes and dtypes before any of these functions is called.
"""
