#!/usr/bin/env python3
"""PyTorch counterpart of `benches/vade_step.rs`: the time of one VaDE training step
(forward, backward, Adam steps, zero_grad) with the Gaussian-mixture prior (K = 10) and
with a standard normal prior, batch 100, 784-500-500-2000-10, float32 on the CPU.

It mirrors `models/vade` and `crates/prior` term by term (Glorot weights, zero biases, a
fixed eps, BCE with logits, the KL of `kl_vade_from_sample` with gamma = q(c|z) not
detached, or `kl_standard_normal`; per-sample sums, then batch means) and the training's
Adam (lr 0.002, betas 0.9/0.999, eps 1e-4; one for the network, one for the prior).
As in the Rust bench the variants alternate step by step, each step reads [loss, recon,
kl] back, and `gmm_prior_frozen_ms` skips the prior's Adam step. `adam_step_ms` is the
network's Adam update within the steps (`--optim`: torch's `fused` or for-loop `default`
Adam; the Rust bench times its two with fixed gradients). Eager PyTorch defers nothing,
so the Rust bench's loss read-back loop has no counterpart. Side by side:

    RAYON_NUM_THREADS=2 target/debug/vade-step --backend flex --dtype f32 --steps 20
    python3 benches/vade_step_torch.py --steps 20 --warmup 3 --batch-size 100 \
        --threads 2
"""

import argparse
import json
import math
import statistics
import time

import torch
from torch import nn

HIDDEN, D, K, FLOOR = [500, 500, 2000], 10, 10, -10.0  # FLOOR: prior log-var floor
LOG_TINY = math.log(torch.finfo(torch.float32).tiny)  # log γ's floor (smallest normal)
ADAM = dict(lr=0.002, betas=(0.9, 0.999), eps=1e-4)  # the training's Adam


def lse(t, dim):
    """log-sum-exp along `dim` (kept); the max detached, and taken as 0 if infinite."""
    m = t.amax(dim, keepdim=True).detach().nan_to_num(0.0, 0.0, 0.0)
    return m + (t - m).exp().sum(dim, keepdim=True).log()


def mlp(widths):
    """Linear layers with ReLU between them: Glorot-uniform weights, zero biases."""
    layers = [nn.Linear(i, o) for i, o in zip(widths, widths[1:])]
    for layer in layers:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*[m for layer in layers for m in (layer, nn.ReLU())][:-1])


class Vade(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec = mlp([784, *HIDDEN, 2 * D]), mlp([D, *HIDDEN[::-1], 784])
        self.logits = nn.Parameter(torch.zeros(K))
        self.means = nn.Parameter(torch.randn(K, D))
        self.log_vars = nn.Parameter(torch.zeros(K, D))

    def loss(self, x, eps, gmm):
        mu, log_var = self.enc(x).split(D, 1)  # the [2000, 2D] head's two halves
        z = mu + (0.5 * log_var).exp() * eps
        logits = self.dec(z)
        softplus = torch.relu(logits) + (-logits.abs()).exp().log1p()
        recon = (softplus - x * logits).sum(1).mean()
        if gmm:
            kl = self.kl_vade_from_sample(z, mu, log_var)
        else:
            kl = 0.5 * (mu.square() + log_var.exp() - log_var - 1.0).sum(1)
        kl = kl.mean()
        return recon + kl, recon, kl

    def kl_vade_from_sample(self, z, mu, log_var):
        centre = self.means.mean(0, keepdim=True).detach()  # Terms::new
        means = self.means - centre
        lv = self.log_vars.clamp_min(FLOOR)
        prec = (-lv).exp()
        mean_prec = means * prec
        mean_quad = (mean_prec * means).sum(1, keepdim=True).T
        prec_t, two_mean_prec_t = prec.T, (2.0 * mean_prec).T
        sum_log_var = lv.sum(1, keepdim=True).T
        log_w = (self.logits - lse(self.logits, 0)).reshape(1, K)  # log π, [1, K]

        def quadratic(v, extra=None):
            vc = v - centre
            sq = vc.square() if extra is None else vc.square() + extra
            return sq @ prec_t - vc @ two_mean_prec_t + mean_quad

        const = log_w - 0.5 * (sum_log_var + D * math.log(2 * math.pi))
        log_joint = const - 0.5 * quadratic(z)
        log_gamma = log_joint - lse(log_joint, 1)
        gamma, log_gamma = log_gamma.exp(), log_gamma.clamp_min(LOG_TINY)
        inner = quadratic(mu, log_var.exp()) + sum_log_var
        per_component = 0.5 * inner - log_w + log_gamma
        entropy = 0.5 * (log_var + 1.0).sum(1)
        return (gamma * per_component).sum(1) - entropy


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optim", choices=["fused", "default"], default="fused")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x, eps = torch.rand(a.batch_size, 784), torch.randn(a.batch_size, D)
    fused = a.optim == "fused"
    adam = lambda params: torch.optim.Adam(params, **ADAM, fused=fused)  # noqa: E731

    # As in vade_step.rs: 0 = normal prior, 1 = GMM prior, 2 = GMM prior (frozen).
    models = [Vade() for _ in range(3)]
    nets = [adam([*m.enc.parameters(), *m.dec.parameters()]) for m in models]
    priors = [adam([m.logits, m.means, m.log_vars]) for m in models]
    times, adam_times, stats = [[] for _ in models], [], [None] * len(models)
    for i in range(a.warmup + a.steps):
        for v, m in enumerate(models):
            start = time.perf_counter()
            loss, recon, kl = m.loss(x, eps, gmm=v != 0)
            loss.backward()
            adam_start = time.perf_counter()
            nets[v].step()
            adam_ms = (time.perf_counter() - adam_start) * 1e3
            if v == 1:
                priors[v].step()
            m.zero_grad(set_to_none=True)
            stats[v] = torch.stack([loss, recon, kl]).detach().tolist()  # one read-back
            if i >= a.warmup:
                times[v].append((time.perf_counter() - start) * 1e3)
                adam_times.append(adam_ms)
    med = statistics.median
    normal, gmm, frozen = times
    ratio = med(g / n for g, n in zip(gmm, normal))
    out = {"bench": "vade_step", "framework": "pytorch", "torch": torch.__version__}
    out |= {"threads": a.threads, "optim": a.optim, "dtype": "f32", "steps": a.steps}
    out |= {"batch_size": a.batch_size, "hidden": HIDDEN, "latent_dim": D}
    out |= {"components": K, "gmm_prior_ms": med(gmm), "normal_prior_ms": med(normal)}
    out |= {"ratio": ratio, "ratio_of_medians": med(gmm) / med(normal)}
    out |= {"target_ratio": 1.10, "within_target": ratio <= 1.10}
    out |= {"gmm_prior_frozen_ms": med(frozen)}
    out |= {"adam_step_ms": {a.optim: med(adam_times)}}
    out["last_loss_recon_kl"] = dict(zip(("normal", "gmm", "gmm_frozen"), stats))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
