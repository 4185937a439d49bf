"""Batch inference beyond one process: a layer mapped over a dask array of sequences.

Needs the ``dask`` extra: ``pip install 'fastrnn[dask]'``.
"""

import numpy as np

__all__ = ["predict"]


def _dask_array():
    try:
        import dask.array as da
    except ImportError:
        raise ImportError("fastrnn.dask needs dask: pip install 'fastrnn[dask]' "
                          "(or: pip install 'dask[array]' distributed)") from None
    return da


def _predict_block(x_block, lengths_block, layer, threads):
    from fastrnn._config import thread_limit
    with thread_limit(threads):
        y, _ = layer(x_block, lengths=lengths_block)
    return y


def predict(layer, x, lengths=None, threads_per_task=1):
    """``layer(x, lengths)[0]`` computed block by block on the active Dask scheduler.

    ``x`` is a dask (or NumPy) array of sequences, (T, B, I), or (B, T, I) for a
    batch_first layer, chunked along the batch axis only (other axes are merged
    into one chunk).  ``lengths`` is an optional (B,) array.  Returns ``y`` as a
    dask array with the same batch chunks.  Each task runs fastrnn on
    ``threads_per_task`` threads (default 1: Dask already runs one task per core,
    so more would oversubscribe the workers' cores).
    """
    da = _dask_array()
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x))
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D (batched sequences), got shape {x.shape}")
    batch_axis = 0 if layer.batch_first else 1
    other = [a for a in range(3) if a != batch_axis]
    x = x.rechunk({other[0]: -1, other[1]: -1})
    width = layer.num_directions * layer.output_size
    if lengths is None:
        lengths_args = (None, None)
    else:
        if isinstance(lengths, da.Array):
            lengths = lengths.rechunk((x.chunks[batch_axis],))
        else:
            lengths = np.asarray(lengths)
            if lengths.shape != (x.shape[batch_axis],):
                raise ValueError(f"lengths: expected shape ({x.shape[batch_axis]},), "
                                 f"got {lengths.shape}")
            lengths = da.from_array(lengths, chunks=(x.chunks[batch_axis],))
        lengths_args = (lengths, "b")
    x_index = "tbi" if batch_axis == 1 else "bti"
    out_index = x_index[:2] + "o"
    return da.blockwise(_predict_block, out_index, x, x_index, *lengths_args,
                        layer, None, threads_per_task, None,
                        new_axes={"o": width}, concatenate=True, dtype=layer.dtype,
                        meta=np.empty((0, 0, 0), layer.dtype))
