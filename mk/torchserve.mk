# TorchServe (real server, CPU). Its Python packages are in requirements/main/torchserve.txt (.venv: the
# server runs its workers with the Python that launches it, so squeezetime is importable there).
# TorchServe 0.12's frontend is Java: Java 17 must be on PATH (installed here with apt when missing).
# gRPC stubs are generated from the protos inside TorchServe's jar, never committed.
TORCHSERVE_GRPC := build/torchserve_grpc

.PHONY: torchserve-java torchserve-grpc bench-torchserve
torchserve-java:
	@command -v java >/dev/null 2>&1 || { echo "TorchServe needs Java 17: installing openjdk-17-jre-headless"; \
	  apt-get update -q && apt-get install -y -q openjdk-17-jre-headless; }

torchserve-grpc: $(TORCHSERVE_GRPC)/inference_pb2_grpc.py

$(TORCHSERVE_GRPC)/inference_pb2_grpc.py: $(STAMP)
	$(PY) -m squeezetime.serving.torchserve.grpc_stubs $(TORCHSERVE_GRPC)

TEST_DEPS += torchserve-java $(TORCHSERVE_GRPC)/inference_pb2_grpc.py

# Requests/s and p50/p95 latency, in-process vs TorchServe (vs Triton when `squeezetime.serving.triton`
# works), concurrency 1/4/8, clip and video requests: build/bench_torchserve/bench_torchserve.{json,png}.
bench-torchserve: setup torchserve-java
	$(PY) benchmarks/bench_torchserve.py --out build/bench_torchserve
