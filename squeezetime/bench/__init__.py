"""Every benchmark of the package; each prints or returns JSON and draws its PNG with ``bench.plot``.

- ``network``: the network's latency per inference path (``squeezetime bench``); ``operators``: the operator
  micro-benchmarks beside it; ``peers``: our backends against torch.compile, ONNX Runtime and OpenVINO
  (``squeezetime bench --peers``);
- ``video``: decoding and clip sampling before and after issue 13 (``squeezetime bench-video``);
- ``serving``: served against in-process throughput, over our gRPC client (``squeezetime bench-serve``) and
  under ``perf_analyzer`` (``squeezetime bench-perf``; the driver: ``perf_analyzer``, the budget row:
  ``decode_budget``);
- ``gpu``: the GPU table of `make gpu-check` (``python -m squeezetime.bench.gpu``).

``timing`` and ``plot`` are their shared helpers; ``prometheus`` reads a server's metrics endpoint (benchmarks and
tests wait on the counters it reports). The CLI modules (``squeezetime.cli.bench*``) only parse
arguments and call these.
"""
