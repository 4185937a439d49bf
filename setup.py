"""Compiles fastrnn's Cython kernels; metadata lives in pyproject.toml.

Environment switches:
    FASTRNN_USE_OPENMP=0          build without OpenMP (serial kernels)
    FASTRNN_PORTABLE=1            no -march=native: a binary that runs on any x86-64
    FASTRNN_SANITIZE=address,undefined   build with those sanitizers (tests, CI)
"""

import os
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Flags per compiler family: (optimisation, native tuning, OpenMP compile, OpenMP link).
FLAGS = {
    # -fno-trapping-math lets GCC if-convert the branch-free activations into vector
    # blends (we never read FP exception flags); NaN and inf semantics are unchanged.
    "unix": (["-O3", "-fno-math-errno", "-fno-trapping-math"], ["-march=native"],
             ["-fopenmp"], ["-fopenmp"]),
    "msvc": (["/O2"], [], ["/openmp"], []),
}
# (extension module, source): the kernels are public, cimportable modules of
# fastrnn.kernels (their .pxd files ship in the package); the underscored ones are internal.
EXTENSIONS = [("fastrnn.kernels.blas", "src/blas.pyx"), ("fastrnn.kernels.rnn", "src/rnn.pyx"),
              ("fastrnn.kernels.lstm", "src/lstm.pyx"), ("fastrnn.kernels.gru", "src/gru.pyx"),
              ("fastrnn._threads", "src/_threads.pyx"), ("fastrnn._stream", "src/_stream.pyx"),
              ("fastrnn._train_ops", "src/_train_ops.pyx"),
              ("fastrnn.kernels.dense", "src/dense.pyx")]
HEADERS = ["fastrnn/kernels/_activations.h", "fastrnn/kernels/_cells.h",
           "fastrnn/kernels/_cells_avx512.h",
           "fastrnn/kernels/_packed_gemm.h", "fastrnn/kernels/_train_ops.h",
           "fastrnn/kernels/_gemv_rows.h", "fastrnn/kernels/_vectors.h",
           "fastrnn/kernels/_blocks.h"]


def _env_flag(name, default):
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


def _compiles(compiler, source, extra_compile, extra_link):
    """True when ``compiler`` builds and links ``source`` with the given flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=extra_compile)
            compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                     extra_postargs=extra_link)
        except Exception:
            return False
    return True


OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel
        {
            #pragma omp atomic
            n += 1;
        }
        return n > 0 ? 0 : 1;
    }
""")


class BuildExt(build_ext):
    """Adds optimisation, OpenMP (when the compiler has it) and sanitizer flags."""

    def build_extensions(self):
        family = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        opt, native, omp_c, omp_l = FLAGS[family]
        compile_args, link_args = list(opt), []
        if not _env_flag("FASTRNN_PORTABLE", "0") and native and \
                _compiles(self.compiler, "int main(void){return 0;}", native, []):
            compile_args += native
        use_openmp = _env_flag("FASTRNN_USE_OPENMP", "1") and \
            _compiles(self.compiler, OPENMP_PROBE, omp_c, omp_l)
        if use_openmp:
            compile_args += omp_c
            link_args += omp_l
        else:
            print("fastrnn: building WITHOUT OpenMP (serial kernels)", file=sys.stderr)
        sanitize = os.environ.get("FASTRNN_SANITIZE", "").strip()
        if sanitize and family == "unix":
            san = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
            compile_args += san
            link_args += san
        build_info = dict(compiler=" ".join(self.compiler.compiler_so[:1]) if
                          hasattr(self.compiler, "compiler_so") else family,
                          compile_args=compile_args, link_args=link_args,
                          openmp=use_openmp, sanitize=sanitize)
        with open(os.path.join(os.path.dirname(__file__) or ".", "fastrnn",
                               "_build_info.py"), "w") as f:
            f.write("# Written by setup.py at build time.\n")
            f.write(f"BUILD_INFO = {build_info!r}\n")
        for ext in self.extensions:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
        super().build_extensions()


extensions = [
    Extension(name, [source], include_dirs=[np.get_include(), "."], depends=HEADERS,
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    for name, source in EXTENSIONS
]

setup(
    ext_modules=cythonize(
        extensions, include_path=["."], build_dir="build/cython",
        compiler_directives=dict(language_level=3, boundscheck=False, wraparound=False,
                                 cdivision=True, initializedcheck=False),
    ),
    cmdclass={"build_ext": BuildExt},
)
