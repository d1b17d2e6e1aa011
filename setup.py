"""Build the compiled core.

Only the extension logic lives here; the package metadata is in pyproject.toml.
OpenMP is probed with the compiler that will build the extensions: a small program
must compile, link and run with ``-fopenmp``, otherwise the core is built serial.
"""

import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0);
    return 0;
}
"""

# -fno-wrapv undoes CPython's -fwrapv, which stops gcc from vectorising loops whose
# indices could wrap; every loop here indexes within checked bounds.
COMPILE_ARGS = ["-O3", "-fno-wrapv"]


def openmp_works(compiler):
    """Return True when a test program compiles, links and runs with -fopenmp."""
    if os.environ.get("FASTNN_NO_OPENMP"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            exe = os.path.join(tmp, "omp_test")
            compiler.link_executable(objects, exe, extra_postargs=["-fopenmp"])
            out = subprocess.run([exe], capture_output=True, text=True, timeout=30)
            return out.returncode == 0 and out.stdout.strip() == "1"
        except Exception:  # any failure of the probe means: build serial
            return False


class BuildExtWithOpenMP(build_ext):
    """build_ext that adds -fopenmp to every extension when the compiler supports it."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            flags = ["/openmp"]
            ok = True
        else:
            flags = ["-fopenmp"]
            ok = openmp_works(self.compiler)
        if ok:
            for ext in self.extensions:
                ext.extra_compile_args += flags
                ext.extra_link_args += flags
        else:
            warnings.warn("fastnn: OpenMP not available; building the compiled core serial.")
            sys.stderr.write("fastnn: OpenMP not available; building serial\n")
        super().build_extensions()


def extension(name):
    path = os.path.join("src", *name.split(".")) + ".pyx"
    return Extension(
        name,
        [path],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=list(COMPILE_ARGS),
        extra_link_args=[],
    )


extensions = [
    extension("fastnn._core._kernels"),
    extension("fastnn._core._train"),
    extension("fastnn._core._threads"),
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
