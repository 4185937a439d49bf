"""fastrnn's compiled kernels, cimportable from other Cython packages.

``cimport fastrnn.kernels.lstm`` (and ``gru``, ``rnn``, ``blas``) gives the
``noexcept nogil`` kernels declared in the ``.pxd`` files beside this module; their
docstrings state the buffer layouts.  Build against them with
``include_path=[fastrnn.get_include()]`` for Cython and
``include_dirs=[fastrnn.get_include()]`` for the C compiler.
"""
