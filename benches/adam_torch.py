#!/usr/bin/env python3
"""`adam-bench`'s PyTorch counterpart: one Adam update of VaDE's network (the same 3.35 M
parameters, as 1-D tensors of the same sizes), gradients zero, ε = 1e-4, with both moments at
1e-6 and at 1e-39 (f32's subnormal range, where the moments of a dead unit's weights end up
late in training). PyTorch's default Adam on the CPU (foreach) and its fused one.

    python3 benches/adam_torch.py [--steps 60] [--threads 2]

Prints one JSON line per variant: the median milliseconds of an update (`normal_ms`,
`subnormal_ms`). torch.set_flush_denormal is left as PyTorch starts (off).
"""
import argparse
import json
import time

import torch

SIZES = [784 * 500, 500, 500 * 500, 500, 500 * 2000, 2000, 2000 * 10, 10, 2000 * 10, 10,
         10 * 2000, 2000, 2000 * 500, 500, 500 * 500, 500, 500 * 784, 784]


def update_ms(moment, fused, steps, warmup):
    params = [torch.nn.Parameter(0.05 * torch.sin(0.37 * torch.arange(n, dtype=torch.float32)))
              for n in SIZES]
    optim = torch.optim.Adam(params, lr=7e-4, eps=1e-4, foreach=not fused, fused=fused)
    for p in params:
        p.grad = torch.zeros_like(p)
    optim.step()
    for p in params:
        state = optim.state[p]
        state["exp_avg"].fill_(moment)
        state["exp_avg_sq"].fill_(moment)
        state["step"].fill_(100)
    times = []
    for i in range(warmup + steps):
        for p in params:
            p.grad = torch.zeros_like(p)
        start = time.perf_counter()
        optim.step()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, fused in (("torch_foreach", False), ("torch_fused", True)):
        normal = update_ms(1e-6, fused, args.steps, args.warmup)
        subnormal = update_ms(1e-39, fused, args.steps, args.warmup)
        print(json.dumps({
            "bench": "adam_update", "optim": name, "torch": torch.__version__, "dtype": "f32",
            "parameters": sum(SIZES), "threads": args.threads, "steps": args.steps,
            "normal_ms": normal, "subnormal_ms": subnormal,
            "subnormal_over_normal": subnormal / normal,
        }))


if __name__ == "__main__":
    main()
