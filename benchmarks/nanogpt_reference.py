"""PyTorch reference baseline: nanoGPT's character-level CPU recipe.

A self-contained, from-scratch PyTorch re-implementation of the training
recipe from nanoGPT's ``shakespeare_char`` example as run on a CPU
(``--device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
--max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``). It exists only to
measure a training-speed and loss baseline that lm_jax can be compared
against; nothing in lm_jax imports it.

Recipe: 65-symbol character vocabulary of Tiny Shakespeare, 90%/10%
train/val split by characters; a 4-layer, 4-head, 128-wide pre-LayerNorm GPT
(block size 64, no biases as nanoGPT's default, GELU MLP, learned positions, weight-tied head);
batches of 12 random windows; AdamW (lr 1e-3, betas (0.9, 0.99), weight decay
0.1 on 2-D weights only), 100 linear warm-up steps then cosine decay to 1e-4
at step 2000, gradient clipping at 1.0, float32, no ``torch.compile``.
``--learning_rate`` changes the peak rate only; the decay still ends at 1e-4,
as lm_jax's ``--config.learning_rate`` leaves ``min_learning_rate``.

PyTorch is a benchmark-only dependency, installed into a separate venv::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 numpy
    .venv-bench/bin/python benchmarks/nanogpt_reference.py [--threads 2]

The last line printed is a JSON summary with ``median_ms_per_iter``,
``tokens_per_sec``, ``final_val_loss_estimate``, ``full_val_loss``,
``learning_rate``, ``threads`` and ``torch_version``.
"""

import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import huge_pages  # beside this script

DATA_PATH = os.path.join(
    os.environ.get("LM_JAX_DATA") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data"),
    "tiny_shakespeare", "input.txt")
N_LAYER, N_HEAD, N_EMBD, BLOCK_SIZE, BATCH_SIZE = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP_ITERS, DECAY_ITERS = 1e-3, 1e-4, 100, 2000
WARMUP_EXCLUDED = 10  # leading training iterations left out of the timing


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then GELU MLP."""

    def __init__(self, bias):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD, bias=bias)
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD, bias=bias)
        self.attn_proj = nn.Linear(N_EMBD, N_EMBD, bias=bias)
        self.ln_2 = nn.LayerNorm(N_EMBD, bias=bias)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=bias)
        self.mlp_proj = nn.Linear(4 * N_EMBD, N_EMBD, bias=bias)

    def forward(self, x):
        """Applies the block to activations of shape (batch, time, N_EMBD)."""
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(N_EMBD, dim=2)
        q, k, v = (z.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    """Decoder-only transformer with learned positions and a tied output head."""

    def __init__(self, vocab_size, bias=False):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, N_EMBD)
        self.wpe = nn.Embedding(BLOCK_SIZE, N_EMBD)
        self.blocks = nn.ModuleList(Block(bias) for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD, bias=bias)
        self.lm_head = nn.Linear(N_EMBD, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual output projections
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * N_LAYER))
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.startswith("blocks") and "ln" not in name:
                nn.init.zeros_(p)  # linear biases; LayerNorms keep (1, 0)

    def forward(self, idx, targets):
        """Returns the mean next-token cross-entropy of ``idx`` against ``targets``."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def lr_at(it, peak=LR):
    """Linear warm-up to ``peak`` for WARMUP_ITERS steps, then cosine decay to MIN_LR."""
    if it < WARMUP_ITERS:
        return peak * (it + 1) / (WARMUP_ITERS + 1)
    if it > DECAY_ITERS:
        return MIN_LR
    ratio = (it - WARMUP_ITERS) / (DECAY_ITERS - WARMUP_ITERS)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (peak - MIN_LR)


def get_batch(data):
    """Samples BATCH_SIZE random (input, target) windows from a token tensor."""
    ix = torch.randint(len(data) - BLOCK_SIZE, (BATCH_SIZE,))
    offsets = ix[:, None] + torch.arange(BLOCK_SIZE)
    return data[offsets], data[offsets + 1]


@torch.no_grad()
def estimate_loss(model, splits, eval_iters):
    """Mean loss over ``eval_iters`` random batches of each split."""
    model.eval()
    out = {k: sum(model(*get_batch(d)).item() for _ in range(eval_iters)) / eval_iters
           for k, d in splits.items()}
    model.train()
    return out


@torch.no_grad()
def full_split_loss(model, data, chunk=256):
    """Token-mean loss over all non-overlapping BLOCK_SIZE windows of ``data``."""
    model.eval()
    starts = torch.arange(0, len(data) - BLOCK_SIZE, BLOCK_SIZE)  # i + 65 <= len
    total = 0.0
    for s in starts.split(chunk):
        offsets = s[:, None] + torch.arange(BLOCK_SIZE)
        total += model(data[offsets], data[offsets + 1]).item() * len(s)
    return total / len(starts)


def main():
    """Trains the reference model and prints timings and losses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_iters", type=int, default=2000)
    parser.add_argument("--eval_interval", type=int, default=250)
    parser.add_argument("--eval_iters", type=int, default=20)
    parser.add_argument("--threads", type=int,
                        default=len(os.sched_getaffinity(0)),
                        help="every core this process may use, as XLA does")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--learning_rate", type=float, default=LR,
                        help="peak rate (nanoGPT's recipe: 1e-3)")
    parser.add_argument("--bias", action="store_true",
                        help="biases in Linear/LayerNorm (nanoGPT's default is off)")
    parser.add_argument("--data", default=DATA_PATH,
                        help="path of Tiny Shakespeare's input.txt")
    args = parser.parse_args()
    huge_pages.rerun_with_huge_pages()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    n_train = int(0.9 * len(data))
    splits = {"train": data[:n_train], "val": data[n_train:]}

    model = GPT(len(chars), bias=args.bias)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.99))
    n_params = sum(p.numel() for p in params) - model.wpe.weight.numel()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"vocab {len(chars)}, params {n_params / 1e6:.2f}M (excl. positions)")

    step_ms, last_val = [], float("nan")
    for it in range(args.max_iters + 1):
        if it % args.eval_interval == 0 or it == args.max_iters:
            losses = estimate_loss(model, splits, args.eval_iters)
            last_val = losses["val"]
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {last_val:.4f}")
        if it == args.max_iters:
            break
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, args.learning_rate)
        loss = model(*get_batch(splits["train"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = loss.item()
        step_ms.append((time.perf_counter() - t0) * 1e3)
        if it % 100 == 0:
            print(f"iter {it}: loss {loss_value:.4f}, time {step_ms[-1]:.2f}ms")

    timed = step_ms[WARMUP_EXCLUDED:] or step_ms
    median_ms = statistics.median(timed)
    tokens_per_sec = BATCH_SIZE * BLOCK_SIZE / (median_ms / 1e3)
    full_val = full_split_loss(model, splits["val"])
    print(f"median {median_ms:.2f} ms/iter (mean {statistics.fmean(timed):.2f}) over "
          f"{len(timed)} iters, {tokens_per_sec:.0f} tokens/s")
    print(f"full val split loss: {full_val:.4f}")
    print(json.dumps({"median_ms_per_iter": median_ms, "tokens_per_sec": tokens_per_sec,
                      "final_val_loss_estimate": last_val, "full_val_loss": full_val,
                      "learning_rate": args.learning_rate, "threads": args.threads,
                      "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
