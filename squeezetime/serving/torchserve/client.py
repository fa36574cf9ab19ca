"""Python clients for a SqueezeTime TorchServe: REST (standard library only) and gRPC (generated stubs).

    from squeezetime.serving.torchserve.client import RestClient, GrpcClient
    RestClient("http://127.0.0.1:8080").predict("video.mp4", views="10x3", topk=3)
    GrpcClient("127.0.0.1:7070").predict(clips_uint8)          # (16,224,224,3) or (N,16,224,224,3)

Both return ``[{"label": ..., "probability": ...}, ...]`` best first; a rejected request raises
``PredictionError`` carrying the HTTP status (400, 413, 503...) or the gRPC status and the message.
Over gRPC, TorchServe 0.12 answers a request the handler rejected with StatusCode.OK and the error
object ``{"code": 400, "type": ..., "message": ...}`` as the prediction; ``GrpcClient`` raises on it.
"""
from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.request

import numpy as np

DEFAULT_MODEL = "squeezetime"


class PredictionError(RuntimeError):
    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def encode_npy(clips) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(clips), allow_pickle=False)
    return buf.getvalue()


def as_payload(data) -> bytes:
    """A path, bytes, or a uint8 clip array -> the request body."""
    if isinstance(data, np.ndarray):
        return encode_npy(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    with open(os.fspath(data), "rb") as f:
        return f.read()


class RestClient:
    """``POST /predictions/<model>`` with the file as an ``application/octet-stream`` body."""

    def __init__(self, url: str = "http://127.0.0.1:8080", model: str = DEFAULT_MODEL, *,
                 token: str | None = None, timeout: float = 120.0):
        self.url, self.model, self.token, self.timeout = url.rstrip("/"), model, token, timeout

    def _headers(self, views: str | None, topk: int | None) -> dict:
        headers = {"Content-Type": "application/octet-stream"}
        if views is not None:
            headers["X-SqueezeTime-Views"] = str(views)
        if topk is not None:
            headers["X-SqueezeTime-Topk"] = str(topk)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def predict_raw(self, data, *, views: str | None = None, topk: int | None = None) -> tuple[int, bytes, dict]:
        """(HTTP status, body, headers) without raising on HTTP errors."""
        req = urllib.request.Request(f"{self.url}/predictions/{self.model}", data=as_payload(data),
                                     headers=self._headers(views, topk), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers or {})

    def predict(self, data, *, views: str | None = None, topk: int | None = None) -> list[dict]:
        status, body, _ = self.predict_raw(data, views=views, topk=topk)
        if status != 200:
            raise PredictionError(status, _message(body))
        return json.loads(body)

    def health(self) -> str:
        with urllib.request.urlopen(f"{self.url}/ping", timeout=self.timeout) as r:
            return json.loads(r.read()).get("status", "?")


def _message(body: bytes) -> str:
    try:
        return json.loads(body).get("message", body.decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace")


class GrpcClient:
    """TorchServe's ``InferenceAPIsService.Predictions`` over gRPC: input ``data`` + optional ``views``/``topk``."""

    def __init__(self, address: str = "127.0.0.1:7070", model: str = DEFAULT_MODEL, *,
                 stub_dir: str | os.PathLike | None = None, token: str | None = None, timeout: float = 120.0,
                 max_message_bytes: int = 64 * 1024 * 1024):
        import grpc

        from .grpc_stubs import load

        self.grpc = grpc
        self.pb2, pb2_grpc = load(stub_dir)
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb2_grpc.InferenceAPIsServiceStub(self.channel)
        self.model, self.timeout = model, timeout
        self.metadata = [("authorization", f"Bearer {token}")] if token else None

    def predict(self, data, *, views: str | None = None, topk: int | None = None) -> list[dict]:
        inputs = {"data": as_payload(data)}
        if views is not None:
            inputs["views"] = str(views).encode()
        if topk is not None:
            inputs["topk"] = str(topk).encode()
        request = self.pb2.PredictionsRequest(model_name=self.model, input=inputs)
        try:
            response = self.stub.Predictions(request, timeout=self.timeout, metadata=self.metadata)
        except self.grpc.RpcError as e:
            raise PredictionError(e.code().name, e.details() or "") from e
        result = json.loads(response.prediction)
        if isinstance(result, dict) and "code" in result:
            # TorchServe's gRPC frontend drops per-request HTTP statuses: a request the handler rejected
            # comes back as StatusCode.OK with the handler's error object as the prediction.
            raise PredictionError(result["code"], result.get("message", ""))
        return result

    def health(self) -> str:
        from google.protobuf import empty_pb2

        return json.loads(self.stub.Ping(empty_pb2.Empty(), timeout=self.timeout).health).get("status", "?")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
