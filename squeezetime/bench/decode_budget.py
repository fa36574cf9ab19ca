"""The decode budget's promise, measured: expensive videos do not hold up cheap ones (bench-perf's ``budget``).

The latency of a cheap video request alone, and while two clients keep sending 8K videos (over the default
pixel budget: each is refused, but only after it was uploaded and opened). Our Python client: a latency, not
a throughput.
"""
from __future__ import annotations

import numpy as np


def over_budget_video(frames: int = 3) -> bytes:
    """An 8K (7680x4320) H.264 video of noise, several MB: over the default max_pixels (4096x2304)."""
    import io

    import av

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 4320, 7680, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        for _ in range(frames):
            noise = rng.integers(0, 256, (4320 // 8, 7680 // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(noise, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def flood(grpc_url: str, video: bytes, stop, answers) -> None:
    """A hostile client in its own process: ``video`` back to back until ``stop``; (seconds, answer) per request."""
    import time

    from ..serving.triton.client import TritonClient, TritonRequestError, TritonUnavailable

    done = []
    with TritonClient(grpc_url, timeout=300) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                client.classify(video, views="10x3", topk=1)
                done.append((time.perf_counter() - t0, "accepted"))
            except (TritonRequestError, TritonUnavailable) as e:
                done.append((time.perf_counter() - t0, str(e)[:160]))
    answers.put(done)


def bench_budget(grpc_url: str, *, rounds: int = 7) -> dict:
    """Cheap request latency alone vs beside two clients sending over-budget (8K) videos back to back. The two
    run in processes of their own, as other clients do: threads here would share this process's GIL with the
    cheap request's client and measure the client, not the server."""
    import multiprocessing
    import statistics
    import time

    from ..serving.triton.client import TritonClient
    from ..synthetic import make_video

    cheap, big = make_video(1, seed=21), over_budget_video()

    def timed(client, video) -> float:
        t0 = time.perf_counter()
        client.classify(video, views="1x1", topk=1)
        return time.perf_counter() - t0

    ctx = multiprocessing.get_context("spawn")
    stop, answers = ctx.Event(), ctx.Queue()
    with TritonClient(grpc_url, timeout=300) as client:
        timed(client, cheap)  # connection, caches
        alone = [timed(client, cheap) for _ in range(rounds)]
        flooders = [ctx.Process(target=flood, args=(grpc_url, big, stop, answers), daemon=True) for _ in range(2)]
        for f in flooders:
            f.start()
        time.sleep(3.0)  # spawned interpreters import and connect, then flood
        beside = [timed(client, cheap) for _ in range(rounds)]
        stop.set()
        refusals = [r for _ in flooders for r in answers.get(timeout=300)]
        for f in flooders:
            f.join(timeout=60)
    a, b = statistics.median(alone), statistics.median(beside)
    return {"cheap_video": "demo clip 320x240, 1x1", "over_budget_video": f"8K H.264, {len(big)} bytes, 10x3",
            "over_budget_clients": "2 processes", "cheap_alone_s": alone, "cheap_beside_s": beside,
            "median_alone_s": a, "median_beside_s": b, "beside_over_alone": b / a,
            "over_budget_requests": len(refusals),
            "over_budget_median_s": statistics.median(r[0] for r in refusals) if refusals else None,
            "over_budget_answer": refusals[0][1] if refusals else None}


__all__ = ["bench_budget", "flood", "over_budget_video"]
