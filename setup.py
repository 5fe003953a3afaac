"""Builds the `ranktune` Python package with this project's CMake (offline, against the Debian
python3-torch / libtorch that the C++ build uses) and packages ranktune._core with
libranktune.so.0 beside it (the module's RPATH is $ORIGIN), plus the chain-of-thought templates.

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv     # sees Debian's torch
    /tmp/venv/bin/pip install --no-build-isolation .              # from the repository root

Environment: RANKTUNE_CMAKE_BUILD_DIR (default build/pip) is the CMake tree used; CMAKE_ARGS adds
arguments to its configure step; RANKTUNE_BUILD_JOBS (default: all cores) the parallel jobs.
docs/python.md has the details.
"""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def project_version() -> str:
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        match = re.search(r"project\(ranktune\s+VERSION\s+([0-9.]+)", f.read())
    if not match:
        raise RuntimeError("cannot find the project version in CMakeLists.txt")
    return match.group(1)


class CMakeExtension(Extension):
    """An extension CMake builds (python/CMakeLists.txt, target ranktune_python)."""

    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configures and builds the CMake target, then copies the module, libranktune.so.0 and the
    templates into the package."""

    def build_extension(self, ext: Extension) -> None:
        build_dir = os.path.abspath(os.environ.get("RANKTUNE_CMAKE_BUILD_DIR", os.path.join(ROOT, "build", "pip")))
        jobs = os.environ.get("RANKTUNE_BUILD_JOBS", str(os.cpu_count() or 1))
        configure = [
            "cmake", "-S", ROOT, "-B", build_dir,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DRANKTUNE_BUILD_PYTHON=ON",
            "-DRANKTUNE_BUILD_TESTS=OFF",
            "-DRANKTUNE_BUILD_EXAMPLES=OFF",
        ] + shlex.split(os.environ.get("CMAKE_ARGS", ""))
        self.announce("ranktune: " + " ".join(configure), level=2)
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "ranktune_python", "-j", jobs])

        built = os.path.join(build_dir, "python", "ranktune")
        modules = glob.glob(os.path.join(built, "_core*.so"))
        if len(modules) != 1:
            raise RuntimeError(f"expected one _core module in {built}, found {modules}")
        target = self.get_ext_fullpath(ext.name)
        package_dir = os.path.dirname(target)
        os.makedirs(package_dir, exist_ok=True)
        shutil.copyfile(modules[0], target)
        # The module's RPATH is $ORIGIN: the library goes next to it, under its SONAME.
        shutil.copyfile(os.path.realpath(os.path.join(build_dir, "libranktune.so.0")),
                        os.path.join(package_dir, "libranktune.so.0"))
        templates = os.path.join(package_dir, "_templates")
        os.makedirs(templates, exist_ok=True)
        for yaml_file in glob.glob(os.path.join(ROOT, "examples", "templates", "*.yaml")):
            shutil.copyfile(yaml_file, os.path.join(templates, os.path.basename(yaml_file)))


# setuptools' own build files go under build/setuptools, beside (not into) the CMake trees, and its
# egg-info out of the source tree.
_setuptools_dir = os.path.join("build", "setuptools")
os.makedirs(os.path.join(ROOT, _setuptools_dir), exist_ok=True)

setup(
    name="ranktune",
    version=project_version(),
    description="LoRA/DoRA fine-tuning in C++ (LibTorch) with a transformers/PEFT-style Python API",
    long_description=open(os.path.join(ROOT, "docs", "python.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # torch is deliberately not a requirement: the module links the system LibTorch, so it must run
    # with the same build (Debian's python3-torch), which pip cannot install.
    package_dir={"": "python"},
    packages=["ranktune"],
    ext_modules=[CMakeExtension("ranktune._core")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
    options={"build": {"build_base": _setuptools_dir}, "egg_info": {"egg_base": _setuptools_dir}},
)
