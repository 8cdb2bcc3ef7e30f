"""Train the demo model `sknet-fmnist` on Fashion-MNIST (Debian's dataset-fashion-mnist) and write its
weights into the package. Seeded and single-process, so a rerun on the same machine reproduces it.

    .venv/bin/python scripts/train_demo.py [--epochs 7] [--out skdeploy/weights/sknet_fmnist.pt]

Images go through the registry's own preprocessing (the one the manifest records), so what the model
learned is exactly what deployment feeds it.
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from skdeploy.data import load_fashion_mnist
from skdeploy.fileio import sha256_file, write_text_atomic
from skdeploy.models import DEMO_MODEL, REGISTRY, build_model

PINNED_SUBSET = 2000  # test images whose correct count tests/unit/models/test_shipped_weights.py pins


def augment(batch: torch.Tensor, generator: torch.Generator, background: float) -> torch.Tensor:
    """Random 2-pixel shifts and horizontal flips (clothes are left/right symmetric)."""
    n, c, h, w = batch.shape
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2), value=background)
    dx = torch.randint(0, 5, (n,), generator=generator)
    dy = torch.randint(0, 5, (n,), generator=generator)
    out = torch.empty_like(batch)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def evaluate(model, images, labels, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch].contiguous(memory_format=torch.channels_last)
            correct += (model(x).argmax(1) == labels[start:start + batch]).sum().item()
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="skdeploy/weights/sknet_fmnist.pt")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    config = REGISTRY[DEMO_MODEL]
    prep = config.preprocessing
    train_pixels, train_labels = load_fashion_mnist("train")
    test_pixels, test_labels = load_fashion_mnist("test")
    train_x = torch.from_numpy(prep.arrays(train_pixels))
    test_x = torch.from_numpy(prep.arrays(test_pixels))
    train_y = torch.from_numpy(train_labels)
    test_y = torch.from_numpy(test_labels)
    background = float((0.0 - prep.mean[0]) / prep.std[0])

    model = build_model(DEMO_MODEL, pretrained=False).to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                                lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(train_x) // args.batch
    total = steps_per_epoch * args.epochs
    warmup = steps_per_epoch // 2
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    history = []
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            index = order[step * args.batch:(step + 1) * args.batch]
            x = augment(train_x[index], generator, background).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
            if step % 100 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps_per_epoch} loss {loss.item():.4f} "
                      f"({time.time() - started:.0f}s)", flush=True)
        accuracy = evaluate(model, test_x, test_y)
        history.append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "test_top1": accuracy})
        print(f"epoch {epoch + 1}: train loss {running / steps_per_epoch:.4f}, test top-1 {accuracy:.4f}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    record = {"model": DEMO_MODEL, "seed": args.seed, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
              "train_images": len(train_x), "test_images": len(test_x), "test_top1": history[-1]["test_top1"],
              "history": history, "seconds": round(time.time() - started), "torch": torch.__version__,
              "weights_sha256": sha256_file(out),
              "pinned_subset": {"split": "test", "first": PINNED_SUBSET,
                                "correct": round(evaluate(model, test_x[:PINNED_SUBSET], test_y[:PINNED_SUBSET])
                                                 * PINNED_SUBSET)}}
    write_text_atomic(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("test_top1", "seconds", "weights_sha256")}))


if __name__ == "__main__":
    main()
