#!/usr/bin/python3
"""The peer: the same model and training step in eager PyTorch, written to do what Hugging Face
transformers 4.40 (LlamaForCausalLM, eager attention) and PEFT 0.12 (LoRA / DoRA Linear) do, so
ranktune can be measured against it side by side on one machine. Not a benchmark of ranktune.

    /usr/bin/python3 bench/peers/peer.py train  --shape smollm2 --method lora  [--steps 6 --warmup 2]
    /usr/bin/python3 bench/peers/peer.py decode --shape smollm2               [--new-tokens 64]

Prints one JSON object (same fields as bench/ranktune_bench) on stdout.
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

SHAPES = {
    # SmolLM2-135M: 30 layers x 576 hidden, 9 heads / 3 KV heads, MLP 1536, vocab 49152, tied.
    "smollm2": dict(hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536, vocab=49152, theta=100000.0),
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, theta=10000.0),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraLinear(nn.Module):
    """PEFT 0.12's lora.Linear forward, LoRA or DoRA (DoraLinearLayer.forward)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dora: bool):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r
        self.dora = dora
        if dora:
            with torch.no_grad():
                self.magnitude = nn.Parameter(torch.linalg.norm(base.weight, dim=1))

    def forward(self, x):
        result = self.base_layer(x)
        if not self.dora:
            return result + self.lora_B(self.lora_A(x)) * self.scaling
        # PEFT 0.12: the norm of the materialised W + s*BA, detached; the base product computed again.
        x_eye = torch.eye(self.lora_A.weight.shape[1], dtype=x.dtype)
        lora_weight = self.lora_B(self.lora_A(x_eye)).T
        weight = self.base_layer.weight
        weight_norm = torch.linalg.norm(weight + self.scaling * lora_weight.detach(), dim=1).detach()
        mag_norm_scale = (self.magnitude / weight_norm).view(1, -1)
        lora_result = self.lora_B(self.lora_A(x))
        result_dora = (mag_norm_scale - 1) * F.linear(x, weight) + mag_norm_scale * lora_result * self.scaling
        return result + result_dora


class RMSNorm(nn.Module):
    def __init__(self, size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, h, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c["heads"], c["kv_heads"], c["hidden"] // c["heads"]
        self.q_proj = nn.Linear(c["hidden"], self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c["hidden"], self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c["hidden"], self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c["hidden"], bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:  # transformers' DynamicCache: concatenate every step
            if cache[0] is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous().reshape(b, t, -1)
        return self.o_proj(out)


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.down_proj = nn.Linear(c["intermediate"], c["hidden"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn, self.mlp = Attention(c), Mlp(c)
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(c["hidden"]), RMSNorm(c["hidden"])

    def forward(self, x, cos, sin, mask, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"])
        d = c["hidden"] // c["heads"]
        self.inv_freq = 1.0 / (c["theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))

    def rope(self, positions):
        freqs = (self.inv_freq[None, :, None] @ positions[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def forward(self, ids, labels=None, caches=None, past=0):
        b, t = ids.shape
        x = self.embed_tokens(ids)
        cos, sin = self.rope(torch.arange(past, past + t)[None].expand(b, t))
        mask = None
        if t > 1:  # transformers' 4D causal mask, the dtype's lowest value above the diagonal
            mask = torch.full((t, t), torch.finfo(x.dtype).min).triu(1)[None, None].expand(b, 1, t, t)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, None if caches is None else caches[i])
        logits = F.linear(self.norm(x), self.embed_tokens.weight).float()
        if labels is None:
            return logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1))


def build(shape, method, r, alpha):
    c = SHAPES[shape]
    torch.manual_seed(0)
    model = Model(c)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.02)
    if method == "full":
        return model
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in TARGETS:
                if hasattr(parent, name):
                    setattr(parent, name, LoraLinear(getattr(parent, name), r, alpha, method == "dora"))
    return model


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train(args):
    model = build(args.shape, args.method, args.r, args.alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = SHAPES[args.shape]["vocab"]
    g = torch.Generator().manual_seed(1)
    times = []
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
        start = time.perf_counter()
        loss = model(ids, labels=ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        if step >= args.warmup:
            times.append(elapsed)
    median = statistics.median(times)
    return {"impl": "peer", "bench": "train", "shape": args.shape, "method": args.method, "threads": torch.get_num_threads(),
            "median_step_s": median, "tokens_per_s": args.batch * args.seq / median, "peak_rss_mb": peak_rss_mb(),
            "steps": args.steps, "loss": float(loss)}


@torch.no_grad()
def decode(args):
    model = build(args.shape, "lora", args.r, args.alpha)
    model.eval()
    vocab = SHAPES[args.shape]["vocab"]
    prompt = torch.randint(0, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(2))
    runs = []
    for _ in range(args.repeats):
        caches = [[None, None] for _ in model.layers]
        start = time.perf_counter()
        logits = model(prompt, caches=caches)
        past = prompt.size(1)
        token = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(args.new_tokens - 1):
            logits = model(token, caches=caches, past=past)
            past += 1
            token = logits[:, -1].argmax(-1, keepdim=True)
        runs.append(args.new_tokens / (time.perf_counter() - start))
    return {"impl": "peer", "bench": "decode", "shape": args.shape, "method": "lora-unmerged", "threads": torch.get_num_threads(),
            "tokens_per_s": statistics.median(runs), "peak_rss_mb": peak_rss_mb()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", choices=["train", "decode"])
    p.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    p.add_argument("--method", choices=["lora", "dora", "full"], default="lora")
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(train(args) if args.bench == "train" else decode(args)))


if __name__ == "__main__":
    main()
