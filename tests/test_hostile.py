"""Hostile clients against the real servers: non-ASCII and non-UTF-8 text in every header and field, still images,
over-budget videos, garbage bodies, sent in the same batches as good requests. Every bad request gets a 4xx
(gRPC INVALID_ARGUMENT) with a plain-ASCII message, every good one its right answer, and no worker or stub
process dies (same pids before and after)."""
from __future__ import annotations

import http.client
import json

import pytest

from support.media import png
from support.torchserve import concurrently
from support.triton import server_processes, video_inputs

pytestmark = pytest.mark.timeout(900)

NON_UTF8 = b"\xff\xfe\xfd"
UTF8_TEXT = "\u00e9\u00fc\u4e2d\U0001f600".encode("utf-8")  # é ü 中 😀


def hostile_http_requests(video: bytes) -> dict[str, tuple[dict, bytes]]:
    """name -> (headers, body); header values given as bytes go on the wire as they are."""
    octet = {"Content-Type": "application/octet-stream"}
    return {
        "latin-1 topk header": ({**octet, "X-SqueezeTime-Topk": "\u00fc".encode("latin-1")}, video),
        "utf-8 topk header": ({**octet, "X-SqueezeTime-Topk": UTF8_TEXT}, video),
        "non-utf-8 views header": ({**octet, "X-SqueezeTime-Views": NON_UTF8}, video),
        "utf-8 views header": ({**octet, "X-SqueezeTime-Views": UTF8_TEXT}, video),
        "json views": ({"Content-Type": "application/json"},
                       json.dumps({"video": __import__("base64").b64encode(video).decode(), "views": "\u00e9"}).encode()),
        "json topk": ({"Content-Type": "application/json"},
                      json.dumps({"video": __import__("base64").b64encode(video).decode(), "topk": "\u4e2d"}).encode()),
        "json non-utf-8 body": ({"Content-Type": "application/json"}, b'{"views": "' + NON_UTF8 + b'"}'),
        "unknown utf-8 option": ({"Content-Type": "application/json"}, json.dumps({"\u00e9": 1}).encode()),
        "still image": (octet, png()),
        "garbage": (octet, NON_UTF8 * 100),
    }


def post(url: str, headers: dict, body: bytes) -> tuple[int, bytes]:
    host, port = url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        conn.putrequest("POST", "/predictions/squeezetime")
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def torchserve_worker_pids(info) -> list[int]:
    import urllib.request

    with urllib.request.urlopen(f"{info.management_url}/models/squeezetime", timeout=30) as r:
        return sorted(w["pid"] for entry in json.loads(r.read()) for w in entry["workers"])


def test_torchserve_survives_hostile_requests(torchserve, demo_videos):
    path, truth = demo_videos[0]
    video = open(path, "rb").read()
    before = torchserve_worker_pids(torchserve)
    hostile = hostile_http_requests(video)
    good = ({"Content-Type": "application/octet-stream", "X-SqueezeTime-Topk": "1"}, video)
    calls = [lambda h=h, b=b: post(torchserve.inference_url, h, b) for h, b in hostile.values()]
    calls += [lambda: post(torchserve.inference_url, *good)] * 3
    results = concurrently(calls)
    for name, (status, body) in zip(hostile, results):
        assert 400 <= status < 500, (name, status, body[:200])
        message = json.loads(body)["message"]
        assert message.isascii() and message, (name, message)
    for status, body in results[len(hostile):]:
        assert status == 200 and json.loads(body)[0]["label"] == truth
    assert torchserve_worker_pids(torchserve) == before, "a worker died (pid changed)"
    assert post(torchserve.inference_url, *good)[0] == 200


def test_triton_survives_hostile_requests(triton, demo_videos):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from squeezetime.triton import TritonClient

    path, truth = demo_videos[0]
    video = open(path, "rb").read()
    before = sorted(server_processes(triton))

    hostile = {
        "non-utf-8 views": video_inputs(video, views=NON_UTF8),
        "utf-8 views": video_inputs(video, views=UTF8_TEXT),
        "negative topk": video_inputs(video, topk=-(2 ** 31)),
        "still image": video_inputs(png()),
        "garbage": video_inputs(NON_UTF8 * 100),
        "utf-8 as video": video_inputs(UTF8_TEXT),
    }

    def send(inputs):
        c = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            c.infer("squeezetime_video", inputs, client_timeout=300)
            return None
        except InferenceServerException as e:
            return e.status(), e.message()
        finally:
            c.close()

    def good():
        with TritonClient(triton.grpc_url, timeout=300) as client:
            return client.classify(path, topk=1)

    results = concurrently([lambda i=i: send(i) for i in hostile.values()] + [good] * 3)
    for name, outcome in zip(hostile, results):
        assert outcome is not None, f"{name}: accepted"
        status, message = outcome
        assert status == "StatusCode.INVALID_ARGUMENT" and message.isascii(), (name, status, message)
    for top in results[len(hostile):]:
        assert top[0][0] == truth
    assert sorted(server_processes(triton)) == before, "a backend stub died (pids changed)"
