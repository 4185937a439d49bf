"""fastrnn: fused LSTM/GRU/RNN kernels for the CPU under a NumPy API like torch.nn's."""

__version__ = "0.1.0"

from fastrnn._config import get_num_threads, set_num_threads, show_config, thread_limit
from fastrnn._layers import GRU, LSTM, RNN
from fastrnn.interop import from_keras, from_onnx, from_torch
from fastrnn import reference
from fastrnn.persistence import load
from fastrnn.models import Dense, Dropout, Embedding, FinalState, Sequential
from fastrnn.training import fit
from fastrnn._scratch import release_memory


def get_include():
    """The directory to put on a downstream build's Cython include_path and C
    include_dirs to ``cimport fastrnn.kernels.lstm`` (and gru, rnn, blas): the
    directory that holds the ``fastrnn`` package, with its ``.pxd`` and ``.h`` files."""
    import os
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


__all__ = ["RNN", "LSTM", "GRU", "from_torch", "from_keras", "from_onnx", "set_num_threads", "get_num_threads",
           "show_config", "thread_limit", "reference", "get_include", "__version__",
           "Embedding", "Dense", "FinalState", "Dropout", "Sequential", "fit", "losses", "optim",
           "release_memory"]
