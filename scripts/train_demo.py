"""Train the demo model shipped in squeezetime/synthetic/ (reproducible: fixed seeds, fresh data every step).

    .venv/bin/python scripts/train_demo.py --steps 600 --out squeezetime/synthetic/demo_k400_w0125_synthetic8.pth

Every step draws a new batch of synthetic clips (so there is nothing to overfit); held-out accuracy is
measured on clips from another seed and on encoded videos through the full video -> labels pipeline.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from tqdm import tqdm

import squeezetime
from squeezetime.models.checkpoint import save_checkpoint
from squeezetime.preprocess import normalize_clip
from squeezetime.synthetic import CLASSES, make_clip, make_video
from squeezetime.synthetic.demo import DEMO_ARCH


def batch(rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = rng.integers(0, len(CLASSES), size)
    clips = np.stack([make_clip(int(label), rng) for label in labels])
    return normalize_clip(clips), torch.from_numpy(labels)


@torch.inference_mode()
def clip_accuracy(model, seed: int, count: int) -> float:
    model.eval()
    rng = np.random.default_rng(seed)
    correct = 0
    for _ in range(math.ceil(count / 16)):
        x, y = batch(rng, 16)
        correct += int((model(x).argmax(1) == y).sum())
    return correct / (math.ceil(count / 16) * 16)


def video_accuracy(model, seed: int, per_class: int) -> float:
    model.eval()
    results = []
    for label in range(len(CLASSES)):
        for k in range(per_class):
            video = make_video(label, seed=seed + 1000 * label + k, container=("mp4", "avi", "webm", "mkv")[k % 4])
            results.append(squeezetime.predict(model, video, topk=1)[0][0] == CLASSES[label])
    return float(np.mean(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = squeezetime.create_model("k400", class_names=list(CLASSES), **DEMO_ARCH)
    model.config["extra"] = {"trained_on": "squeezetime.synthetic", "train_steps": args.steps}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    start = time.time()
    model.train()
    with tqdm(range(args.steps), desc="train demo") as bar:
        for step in bar:
            x, y = batch(rng, args.batch_size)
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    report = {
        "steps": args.steps, "train_seconds": round(time.time() - start),
        "heldout_clip_accuracy": clip_accuracy(model, seed=10_000 + args.seed, count=400),
        "heldout_video_accuracy": video_accuracy(model, seed=20_000 + args.seed, per_class=6),
    }
    save_checkpoint(model, args.out, training=report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
