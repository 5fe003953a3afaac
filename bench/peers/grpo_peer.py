#!/usr/bin/python3
"""The GRPO peer: one GRPO step in eager PyTorch doing what TRL's GRPOTrainer does without vLLM, on
the model of peer.py (transformers 4.40's Llama, PEFT 0.12's LoRA), so ranktune's GRPO step can be
measured against it side by side. Not a benchmark of ranktune.

What one step does, as TRL (trl/trainer/grpo_trainer.py, use_vllm=False):
  1. rollout: each prompt repeated num_generations times and sampled through `generate` (the whole
     generation batch at once, a concatenating KV cache, logits over the full vocabulary for every
     prompt position in the prefill, as transformers 4.40 computes them);
  2. rewards (a cheap rule on the tokens: the time is not the peer's or ranktune's) and group
     advantages (mean / std + 1e-4);
  3. a separate forward over prompt + completion per micro-batch of per_device_train_batch_size
     completions, keeping the logits of the completion only (logits_to_keep), per-token log-probs
     and entropy, the dapo loss, backward; one optimizer step after the generation batch
     (steps_per_generation = gradient accumulation);
  4. with --beta > 0, one more forward per micro-batch with the adapters disabled (the reference).

    /usr/bin/python3 bench/peers/grpo_peer.py --shape smollm2 [--prompts 4 --generations 8 --new-tokens 128]

Prints one JSON object (the fields of ranktune_bench grpo) on stdout.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import SHAPES, LoraLinear, build, peak_rss_mb  # noqa: E402


@contextlib.contextmanager
def adapters_disabled(model):
    """PEFT's disable_adapter(): every LoraLinear returns its base layer's output."""
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    forwards = [m.forward for m in layers]
    for m in layers:
        m.forward = m.base_layer.forward
    try:
        yield
    finally:
        for m, f in zip(layers, forwards):
            m.forward = f


def hidden_states(model, ids, caches=None, past=0):
    """peer.Model.forward up to the final norm (so the head can be applied to the kept positions)."""
    b, t = ids.shape
    x = model.embed_tokens(ids)
    cos, sin = model.rope(torch.arange(past, past + t)[None].expand(b, t))
    mask = None
    if t > 1:
        mask = torch.full((t, t), torch.finfo(x.dtype).min).triu(1)[None, None].expand(b, 1, t, t)
    for i, layer in enumerate(model.layers):
        x = layer(x, cos, sin, mask, None if caches is None else caches[i])
    return model.norm(x)


@torch.no_grad()
def rollout(model, prompts, new_tokens, temperature, generator):
    caches = [[None, None] for _ in model.layers]
    logits = F.linear(hidden_states(model, prompts, caches), model.embed_tokens.weight).float()
    past = prompts.size(1)
    out = []
    for _ in range(new_tokens):
        probs = F.softmax(logits[:, -1] / temperature, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator)
        out.append(token)
        logits = F.linear(hidden_states(model, token, caches, past), model.embed_tokens.weight).float()
        past += 1
    return torch.cat(out, dim=1)


def completion_logps(model, ids, completion_length, temperature):
    """TRL's _get_per_token_logps_and_entropies: logits of the completion positions only."""
    h = hidden_states(model, ids)[:, -completion_length - 1 : -1]
    logits = F.linear(h, model.embed_tokens.weight).float() / temperature
    log_probs = logits.log_softmax(-1)
    logps = log_probs.gather(-1, ids[:, -completion_length:, None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logps, entropy


def next_prompts(args, gen, index):
    """The step's prompts: from --prompts-file (left-padded with their first id, as a batch of
    unequal prompts would be with an attention mask; the peer keeps no mask, so the padding is
    real tokens of the same count), else random ids of --prompt-length."""
    if args.prompt_ids is None:
        return torch.randint(0, SHAPES[args.shape]["vocab"], (args.prompts, args.prompt_length), generator=gen)
    rows = [args.prompt_ids[(index * args.prompts + i) % len(args.prompt_ids)] for i in range(args.prompts)]
    width = max(len(r) for r in rows)
    return torch.tensor([[r[0]] * (width - len(r)) + r for r in rows])


def step(model, opt, args, gen, index):
    prompts = next_prompts(args, gen, index)
    args.prompt_length = prompts.size(1)
    repeated = prompts.repeat_interleave(args.generations, dim=0)
    model.eval()
    start = time.perf_counter()
    completions = rollout(model, repeated, args.new_tokens, args.temperature, gen)
    rollout_s = time.perf_counter() - start

    start = time.perf_counter()
    rewards = (completions % 2 == 0).float().mean(-1)  # a rule on the tokens: cheap, varies by sample
    grouped = rewards.view(-1, args.generations)
    advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).view(-1)
    ids = torch.cat([repeated, completions], dim=1)
    mask = torch.ones_like(completions, dtype=torch.float32)
    total_tokens = mask.sum()
    model.train()
    for start_row in range(0, ids.size(0), args.micro_batch):
        rows = slice(start_row, start_row + args.micro_batch)
        logps, _ = completion_logps(model, ids[rows], args.new_tokens, args.temperature)
        old = logps.detach()
        ratio = torch.exp(logps - old)
        adv = advantages[rows, None]
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv)
        if args.beta:
            with torch.no_grad(), adapters_disabled(model):
                ref, _ = completion_logps(model, ids[rows], args.new_tokens, args.temperature)
            per_token = per_token + args.beta * (torch.exp(ref - logps) - (ref - logps) - 1)
        loss = (per_token * mask[rows]).sum() / total_tokens  # dapo
        loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return rollout_s, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--prompt-length", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=8, help="per_device_train_batch_size (completions)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=None, help="the shape with another vocabulary size (the tokenizer's)")
    p.add_argument("--prompts-file", default=None,
                   help="JSON list of prompt id lists, taken in order (bench/grpo.sh: ranktune's rendered prompts)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.vocab:
        SHAPES[args.shape] = {**SHAPES[args.shape], "vocab": args.vocab}
    args.prompt_ids = json.load(open(args.prompts_file)) if args.prompts_file else None
    model = build(args.shape, "lora", args.r, args.alpha)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-6, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    rollouts, trains = [], []
    for i in range(args.warmup + args.steps):
        r, t = step(model, opt, args, gen, i)
        if i >= args.warmup:
            rollouts.append(r)
            trains.append(t)
    rows = args.prompts * args.generations
    rollout_s, train_s = statistics.median(rollouts), statistics.median(trains)
    print(json.dumps({
        "impl": "peer", "bench": "grpo", "shape": args.shape, "threads": torch.get_num_threads(), "beta": args.beta,
        "prompts": args.prompts, "generations": args.generations, "new_tokens": args.new_tokens,
        "median_step_s": rollout_s + train_s, "rollout_s": rollout_s, "train_s": train_s,
        "rollout_tokens_per_s": rows * args.new_tokens / rollout_s,
        "train_tokens_per_s": rows * (args.prompt_length + args.new_tokens) / train_s,
        "step_tokens_per_s": rows * args.new_tokens / (rollout_s + train_s),
        "rollout_share": rollout_s / (rollout_s + train_s), "peak_rss_mb": peak_rss_mb(), "steps": args.steps}))


if __name__ == "__main__":
    main()
