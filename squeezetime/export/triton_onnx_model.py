"""Triton python-backend model running SqueezeTime's ONNX export with onnxruntime (CPU).

Copied as ``<repo>/squeezetime_onnx_python/1/model.py`` by ``squeezetime export --format onnx --triton-repo``
for servers that have the python backend only (the tritonserver bundled with nvidia-pytriton). It needs
numpy and onnxruntime, not squeezetime: the normalisation and softmax are inside the ONNX graph.
CLIP uint8 [B, 16, 224, 224, 3] -> LOGITS, PROBS float32 [B, classes]; requests of a dynamic batch are
concatenated into one onnxruntime call.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        options = ort.SessionOptions()
        threads = int(params.get("num_threads", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.dims = [d["dims"] for d in config["input"]][0]

    def execute(self, requests):
        responses = [None] * len(requests)
        batch = []
        for i, request in enumerate(requests):
            array = pb_utils.get_input_tensor_by_name(request, "CLIP").as_numpy()
            if array.dtype != np.uint8 or list(array.shape[1:]) != [int(d) for d in self.dims]:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"CLIP must be uint8 [batch, {', '.join(map(str, self.dims))}], got {array.dtype} {array.shape}"))
            else:
                batch.append((i, array))
        if batch:
            clips = np.ascontiguousarray(np.concatenate([a for _, a in batch]))
            try:
                logits, probs = self.session.run(self.output_names, {self.input_name: clips})
            except Exception as e:  # noqa: BLE001 - answer every request of the failed batch
                for i, _ in batch:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {e}"))
                return responses
            start = 0
            for i, array in batch:
                n = array.shape[0]
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("LOGITS", np.ascontiguousarray(logits[start:start + n], np.float32)),
                    pb_utils.Tensor("PROBS", np.ascontiguousarray(probs[start:start + n], np.float32))])
                start += n
        return responses

    def finalize(self):
        self.session = None
