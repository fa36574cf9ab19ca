"""squeezetime: SqueezeTime video classification for production (Python, CLI, Triton, TorchServe)."""
import glob
import os
import runpy

from setuptools import find_packages, setup


def kernel_extensions():
    """squeezetime._C (CPU kernels + the operator schema), always; squeezetime._C_cuda when torch has CUDA and
    a CUDA toolkit is found (CUDA_HOME honoured; see csrc/tools/find_cuda_home.py). SQUEEZETIME_NO_EXT=1 skips
    both (the package then runs its pure-PyTorch path); SQUEEZETIME_NO_CUDA=1 skips the CUDA one."""
    if os.environ.get("SQUEEZETIME_NO_EXT") == "1":
        return {}
    try:
        import torch
    except ImportError:  # e.g. pip's isolated build env: use `pip install --no-build-isolation .`
        print("squeezetime: torch not importable at build time; not building the C++ extension")
        return {}
    cuda_home = None
    if torch.version.cuda and os.environ.get("SQUEEZETIME_NO_CUDA") != "1":
        tools = runpy.run_path(os.path.join("csrc", "tools", "find_cuda_home.py"))
        cuda_home = tools["find_cuda_home"]()
        if cuda_home:
            os.environ["CUDA_HOME"] = cuda_home  # before cpp_extension reads it
    from torch.utils import cpp_extension

    cxx = ["-O3", "-fopenmp"]
    if os.environ.get("SQUEEZETIME_PORTABLE") != "1":
        cxx.append("-march=native")  # auto-vectorised kernels use the build machine's widest SIMD
    common = ["csrc/squeezetime_ops.cpp", "csrc/python_module.cpp"]
    exts = [cpp_extension.CppExtension(
        "squeezetime._C", common + sorted(glob.glob("csrc/cpu/*.cpp")),
        extra_compile_args={"cxx": cxx + ["-DSQUEEZETIME_MODULE_NAME=_C"]}, extra_link_args=["-fopenmp"])]
    if cuda_home:
        exts.append(cpp_extension.CUDAExtension(
            "squeezetime._C_cuda", ["csrc/python_module.cpp"] + sorted(glob.glob("csrc/cuda/*.cu")),
            include_dirs=tools["wheel_cuda_includes"](cuda_home),
            extra_compile_args={"cxx": ["-O3", "-DSQUEEZETIME_MODULE_NAME=_C_cuda"],
                                "nvcc": ["-O3", "-DSQUEEZETIME_MODULE_NAME=_C_cuda"]}))
    elif torch.version.cuda:
        print("squeezetime: torch has CUDA but no CUDA toolkit was found (set CUDA_HOME); CPU extension only")
    return {"ext_modules": exts, "cmdclass": {"build_ext": cpp_extension.BuildExtension}}


setup(
    name="squeezetime",
    version="0.1.0",
    description="SqueezeTime video classifier: bit-faithful model, official checkpoints, fast inference, serving",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["squeezetime", "squeezetime.*"]),
    package_data={"squeezetime": ["labels/*.txt", "synthetic/*.pth", "serving/**/*", "py.typed"]},
    install_requires=["torch>=2.4", "numpy", "av", "tqdm"],
    extras_require={
        "bench": ["matplotlib"],
        "test": ["pytest", "pytest-timeout", "matplotlib"],
        "serve": ["tritonclient[grpc,http]", "nvidia-pytriton"],  # CPU tritonserver binary from pytriton
        "torchserve": ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml", "psutil", "grpcio",
                       "grpcio-tools>=1.76,<1.81", "protobuf>=6.31.1,<7"],
        "export": ["onnx", "onnxruntime", "onnxscript"],
        "tensorrt": ["torch-tensorrt"],
    },
    entry_points={"console_scripts": ["squeezetime=squeezetime.cli:main"]},
    **kernel_extensions(),
)
