# Triton's own benchmark client. perf_analyzer ships only in the tritonclient 2.51.0 wheel (.venv has a newer
# tritonclient for the Python client), so it gets its own small venv. It loads libb64.so.0d (Debian libb64-0d,
# installed with apt when missing) and libcudart.so.12 (load-time only, no GPU used: the nvidia-cuda-runtime-cu12
# wheel; squeezetime.bench.perf_analyzer puts it on LD_LIBRARY_PATH).
PERF_VENV  := $(VENV)-perf
PERF_STAMP := $(PERF_VENV)/.installed

.PHONY: perf-setup bench-perf
perf-setup: $(PERF_STAMP)

$(PERF_STAMP): mk/perf.mk
	@ldconfig -p | grep -q libb64.so.0d || { echo "perf_analyzer needs libb64: installing libb64-0d"; \
	  apt-get install -y -q libb64-0d || { apt-get update -q && apt-get install -y -q libb64-0d; }; }
	test -x $(PERF_VENV)/bin/python || $(PYTHON) -m venv $(PERF_VENV)
	$(PERF_VENV)/bin/pip install -q tritonclient==2.51.0 nvidia-cuda-runtime-cu12
	touch $@

TEST_DEPS += $(PERF_STAMP)

# perf_analyzer vs in-process, Triton clip + video models and TorchServe: build/bench_perf/bench_perf.{json,png}
bench-perf: setup $(PERF_STAMP) triton-setup torchserve-java
	$(PY) -m squeezetime.cli bench-perf --demo --out build/bench_perf
