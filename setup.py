"""squeezetime: SqueezeTime video classification for production (Python, CLI, Triton, TorchServe)."""
from setuptools import find_packages, setup

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
        "torchserve": ["torchserve", "torch-model-archiver", "grpcio-tools"],
        "export": ["onnx", "onnxruntime", "onnxscript"],
        "tensorrt": ["torch-tensorrt"],
    },
    entry_points={"console_scripts": ["squeezetime=squeezetime.cli:main"]},
)
