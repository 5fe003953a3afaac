#!/usr/bin/env python3
"""Writes the GSM8K quickstart's data, tokenizer and model config (standard library only).

    /usr/bin/python3 examples/gsm8k/quickstart/make_quickstart.py

Everything is generated here from a fixed seed, so a re-run writes byte-identical files:
  data/train.jsonl, data/test.jsonl   synthetic word problems in GSM8K's JSONL format
  model/tokenizer.json                byte-level BPE trained on the training prompts + answers
  model/tokenizer_config.json         BOS/EOS/PAD roles
  model/config.json                   a tiny Llama; no weights (ranktune initialises them from a seed)
"""
import json
import random
import re
from collections import Counter
from pathlib import Path

SEED = 2026
N_TRAIN, N_TEST = 600, 60
SPECIALS = ["<pad>", "<s>", "</s>"]  # ids 0, 1, 2; byte b is id 3 + b; merges follow
VOCAB_SIZE = 1024                    # 3 + 256 + 765 merges
PROMPT = "Q: {question}\nA: Let's think step by step.\n"  # examples/templates/gsm8k-cot.yaml
OUT = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------
# Word problems. Each template returns (question, solution lines, answer); the lines are short
# sentences with GSM8K's calculator annotations, "a op b = <<a op b=r>>r".

SHE = ("Maria Emma Olivia Sofia Mia Chloe Grace Lily Zoe Nora Hannah Leah Ruby Aisha Priya Mei Yuki "
       "Fatima Elena Rosa Ines Clara Julia Amara Nadia Ingrid Lucia Freya Keiko Bianca").split()
HE = ("Liam Noah James Lucas Ethan Mason Leo Omar Ravi Kenji Mateo Diego Samuel Tom Ben Carlos Ahmed "
      "Felix Hugo Oscar Tariq Jonas Marco Ivan Kofi Pablo Andre Nikhil Stefan Joel").split()


def people(rng, n):
    """n people with different names, each (name, he, him, his, He)."""
    out = []
    while len(out) < n:
        she = rng.random() < 0.5
        name = rng.choice(SHE if she else HE)
        if all(name != o[0] for o in out):
            out.append((name, "she", "her", "her", "She") if she else (name, "he", "him", "his", "He"))
    return out


def calc(a, op, b, unit=""):
    """'a op b = <<a op b=r>>r' and r; division must be exact, results never negative."""
    r = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    assert r >= 0 and (op != "/" or a % b == 0), (a, op, b)
    return f"{a} {op} {b} = {unit}<<{a}{op}{b}={r}>>{r}", r


def t_packs(rng):  # multiply, then subtract
    (p, he, _, _, He), (f, *_) = people(rng, 2)
    one, many, items = rng.choice([("box", "boxes", "pencils"), ("pack", "packs", "stickers"),
                                   ("bag", "bags", "marbles"), ("jar", "jars", "cookies"),
                                   ("crate", "crates", "apples"), ("case", "cases", "markers"),
                                   ("tray", "trays", "cupcakes"), ("carton", "cartons", "eggs")])
    s1, t = calc(rng.randint(2, 9), "*", k := rng.randint(3, 12))
    s2, r = calc(t, "-", rng.randint(1, t - 1))
    q = (f"{p} buys {t // k} {many} of {items} with {k} {items} in each {one}. {He} gives {t - r} {items} "
         f"to {f}. How many {items} does {p} have left?")
    return q, [f"{p} buys {s1} {items}.", f"After giving some away, {he} has {s2} {items} left."], r


def t_sold(rng):  # add two days, subtract from the stock
    place, items, verb = rng.choice([("library", "books", "borrowed"), ("bakery", "muffins", "sold"),
                                     ("farm stand", "melons", "sold"), ("toy shop", "kites", "sold"),
                                     ("garden center", "plants", "sold"), ("hat shop", "hats", "sold"),
                                     ("bike shop", "helmets", "sold"), ("museum", "maps", "given out")])
    day1, day2 = rng.sample(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"], 2)
    s1, x = calc(b := rng.randint(5, 40), "+", c := rng.randint(5, 40))
    s2, r = calc(x + rng.randint(3, 60), "-", x)
    q = (f"A {place} had {x + r} {items}. On {day1}, {b} {items} were {verb}, and on {day2}, {c} more were "
         f"{verb}. How many {items} are left?")
    return q, [f"In total {s1} {items} were {verb}.", f"So {s2} {items} are left."], r


def t_share(rng):  # subtract, then divide equally
    p, he, him, _, He = people(rng, 1)[0]
    items = rng.choice(["strawberries", "grapes", "candies", "crayons", "cherries", "walnuts", "plums"])
    k, keep = rng.randint(2, 8), rng.randint(1, 9)
    s1, x = calc(k * rng.randint(2, 12) + keep, "-", keep)
    s2, r = calc(x, "/", k)
    q = (f"{p} picks {x + keep} {items} and keeps {keep} for {him}self. {He} shares the rest equally among {k} "
         f"friends. How many does each friend get?")
    return q, [f"{p} shares {s1} {items}.", f"Each friend gets {s2} {items}."], r


def t_half(rng):  # half, then add
    (p, he, _, _, He), (f, *_) = people(rng, 2)
    items = rng.choice(["stickers", "balloons", "pens", "postcards", "buttons", "ribbons", "seeds"])
    s1, h = calc(n := 2 * rng.randint(4, 40), "/", 2)
    s2, r = calc(h, "+", m := rng.randint(2, 25))
    q = (f"{p} has {n} {items}. {He} gives half of them to {f} and then buys {m} more. "
         f"How many {items} does {p} have now?")
    return q, [f"Half of {n} is {s1}.", f"After buying more, {he} has {s2} {items}."], r


def t_times(rng):  # twice / three times as many, then the total
    (a, *_), (b, *_) = people(rng, 2)
    items = rng.choice(["toy cars", "comic books", "seashells", "puzzles", "stamps", "trading cards"])
    k = rng.choice([2, 2, 3, 4])
    s1, x = calc(n := rng.randint(3, 30), "*", k)
    s2, r = calc(n, "+", x)
    q = (f"{a} has {n} {items}. {b} has {['', '', 'twice', 'three times', 'four times'][k]} as many {items} "
         f"as {a}. How many {items} do they have together?")
    return q, [f"{b} has {s1} {items}.", f"Together they have {s2} {items}."], r


def t_change(rng):  # money: cost, then change
    p, he, _, _, He = people(rng, 1)[0]
    items = rng.choice(["notebooks", "sandwiches", "tickets", "mugs", "scarves", "lamps", "brushes"])
    bill = rng.choice([20, 50, 100])
    k, price = rng.choice([(k, c) for k in range(2, 10) for c in range(2, 16) if k * c < bill])
    s1, c = calc(k, "*", price, "$")
    s2, r = calc(bill, "-", c, "$")
    q = f"{p} buys {k} {items} for ${price} each. {He} pays with a ${bill} bill. How much change does {he} get?"
    return q, [f"The {items} cost {s1}.", f"The change is {s2}."], r


def t_wage(rng):  # money rate per hour, hours per day, days
    p, he, _, _, He = people(rng, 1)[0]
    job = rng.choice(["at a cafe", "at the library", "as a tutor", "at a bike shop", "on a farm", "at the zoo"])
    rate, hours, days = rng.randint(8, 20), rng.randint(2, 8), rng.randint(2, 6)
    s1, x = calc(rate, "*", hours, "$")
    s2, r = calc(x, "*", days, "$")
    q = (f"{p} works {job} and earns ${rate} per hour. {He} works {hours} hours a day for {days} days. "
         f"How much money does {he} earn?")
    return q, [f"Each day {he} earns {s1}.", f"In {days} days {he} earns {s2}."], r


def t_pages(rng):  # subtract, then divide by a daily rate
    p, he, *_ = people(rng, 1)[0]
    per_day, done = rng.randint(5, 30), rng.randint(10, 90)
    s1, x = calc(per_day * rng.randint(2, 12) + done, "-", done)
    s2, r = calc(x, "/", per_day)
    q = (f"A book has {x + done} pages. {p} has read {done} pages and reads {per_day} pages per day. "
         f"How many more days does {he} need to finish the book?")
    return q, [f"{p} has {s1} pages left.", f"That takes {s2} days."], r


def t_more(rng):  # comparison: how many more
    (a, *_), (b, *_) = people(rng, 2)
    items = rng.choice(["cans", "bottles", "leaves", "acorns", "pinecones", "eggs", "clams"])
    s1, x = calc(per_day := rng.randint(4, 20), "*", days := rng.randint(2, 7))
    s2, r = calc(x, "-", rng.randint(2, x - 1))
    q = (f"{a} collects {per_day} {items} per day for {days} days. {b} collects {x - r} {items} in total. "
         f"How many more {items} does {a} collect than {b}?")
    return q, [f"{a} collects {s1} {items}.", f"That is {s2} more than {b}."], r


def t_jars(rng):  # three steps: multiply, add, divide
    p, he, _, _, He = people(rng, 1)[0]
    items = rng.choice(["marbles", "beads", "buttons", "pebbles", "jellybeans"])
    bags, per_bag, jars, have = rng.choice([(b, n, j, j * e - b * n) for b in range(2, 7) for n in range(3, 11)
                                            for j in range(2, 7) for e in range(5, 21) if j * e > b * n])
    s1, x = calc(bags, "*", per_bag)
    s2, y = calc(have, "+", x)
    s3, r = calc(y, "/", jars)
    q = (f"{p} has {have} {items}. {He} buys {bags} bags with {per_bag} {items} in each and shares all the "
         f"{items} equally among {jars} jars. How many {items} go in each jar?")
    return q, [f"The bags hold {s1} {items}.", f"{p} has {s2} {items} in all.", f"Each jar gets {s3} {items}."], r


def t_fraction(rng):  # a half / third / quarter / fifth, then the rest
    word = ["", "", "Half", "A third", "A quarter", "A fifth"][k := rng.choice([2, 3, 4, 5])]
    place, whole, part, rest = rng.choice([
        ("farm", "animals", "cows", "sheep"), ("pond", "ducks", "white", "brown"), ("zoo", "birds", "parrots", "owls"),
        ("garden", "flowers", "roses", "tulips"), ("parking lot", "cars", "red", "blue"),
        ("shelf", "jars", "full of jam", "full of honey")])
    s1, x = calc(n := k * rng.randint(3, 25), "/", k)
    s2, r = calc(n, "-", x)
    q = f"A {place} has {n} {whole}. {word} of them are {part} and the rest are {rest}. How many {whole} are {rest}?"
    return q, [f"{word} of {n} is {s1}.", f"The rest is {s2}."], r


def t_age(rng):  # older by b, then in c years
    (a, *_), (b, *_) = people(rng, 2)
    s1, x = calc(age := rng.randint(4, 40), "+", diff := rng.randint(2, 30))
    s2, r = calc(x, "+", later := rng.randint(2, 15))
    q = f"{a} is {age} years old. {b} is {diff} years older than {a}. How old will {b} be in {later} years?"
    return q, [f"{b} is {s1} years old now.", f"In {later} years {b} will be {s2}."], r


TEMPLATES = [t_packs, t_sold, t_share, t_half, t_times, t_change, t_wage, t_pages, t_more, t_jars,
             t_fraction, t_age]


def make_problems(rng):
    """N_TRAIN + N_TEST problems with distinct questions, the templates taken in turn."""
    seen, problems = set(), []
    while len(problems) < N_TRAIN + N_TEST:
        q, lines, r = TEMPLATES[len(problems) % len(TEMPLATES)](rng)
        answer = "\n".join(lines) + f"\n#### {r}"
        assert len(q) <= 200 and len(answer) <= 250, (q, answer)
        if q not in seen:
            seen.add(q)
            problems.append({"question": q, "answer": answer})
    rng.shuffle(problems)
    return problems[:N_TRAIN], problems[N_TRAIN:]


# ---------------------------------------------------------------------------------------------
# Byte-level BPE. tokenizer.json carries the PCRE pattern (GPT-2/Llama 3 style, one digit per
# token); PY_PATTERN is the same pattern for ASCII text, where \p{L} is [A-Za-z] and \p{N} [0-9].

PCRE_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PY_PATTERN = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters (space is 'Ġ')."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]  # mapped, in order, to chr(256), chr(257), ...
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


BYTE_CHAR = bytes_to_unicode()


def pre_tokenize(text):
    """The pieces BPE works on, each spelled in byte-level characters."""
    assert text.isascii(), "PY_PATTERN equals PCRE_PATTERN only on ASCII text"
    pieces = PY_PATTERN.findall(text)
    assert "".join(pieces) == text
    return ["".join(BYTE_CHAR[b] for b in piece.encode()) for piece in pieces]


def merge_word(symbols, pair):
    """Replaces each occurrence of `pair`, left to right, by its concatenation."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def train_bpe(texts, n_merges):
    """Merges the most frequent adjacent pair n_merges times; ties go to the smallest pair."""
    words = Counter(tuple(piece) for text in texts for piece in pre_tokenize(text))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        words = Counter({merge_word(symbols, best): count for symbols, count in words.items()})
    return merges


def encode(text, vocab, ranks):
    """Hugging Face's BPE encoding: in each piece, merge the lowest-ranked pair until none is left."""
    ids = []
    for piece in pre_tokenize(text):
        symbols = tuple(piece)
        while len(symbols) > 1:
            pair = min(zip(symbols, symbols[1:]), key=lambda p: ranks.get(p, len(ranks)))
            if pair not in ranks:
                break
            symbols = merge_word(symbols, pair)
        ids.extend(vocab[s] for s in symbols)
    return ids


def tokenizer_json(merges):
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({BYTE_CHAR[b]: len(SPECIALS) + b for b in range(256)})
    for a, b in merges:
        assert a + b not in vocab
        vocab[a + b] = len(vocab)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIALS)]
    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    return vocab, {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PCRE_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        # "<s> $A" (Llama 3's layout): BOS only, as tokenizer_config.json's add_bos_token says too.
        "post_processor": {"type": "TemplateProcessing",
                           "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


MODEL_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
    "attention_dropout": 0.0, "mlp_bias": False, "tie_word_embeddings": True,
    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02,
    "pretraining_tp": 1, "use_cache": True, "torch_dtype": "float32",
}
TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
    "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False,
    "clean_up_tokenization_spaces": False, "model_max_length": 512,
}


def write(path, content):
    """Writes text, or an object as indented JSON, as UTF-8 with \\n line ends."""
    if not isinstance(content, str):
        content = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8", newline="\n")


def main():
    rng = random.Random(SEED)
    train, test = make_problems(rng)
    for name, rows in (("train", train), ("test", test)):
        write(OUT / "data" / f"{name}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))

    texts = [PROMPT.format(question=row["question"]) + row["answer"] for row in train]
    merges = train_bpe(texts, VOCAB_SIZE - len(SPECIALS) - 256)
    vocab, tokenizer = tokenizer_json(merges)
    assert len(vocab) == VOCAB_SIZE, f"only {len(merges)} merges were possible"
    write(OUT / "model" / "tokenizer.json", tokenizer)
    write(OUT / "model" / "tokenizer_config.json", TOKENIZER_CONFIG)
    write(OUT / "model" / "config.json", MODEL_CONFIG)

    ranks = {pair: i for i, pair in enumerate(merges)}
    lengths = [1 + len(encode(text, vocab, ranks)) for text in texts]  # + BOS
    print(f"{len(train)} train / {len(test)} test problems from {len(TEMPLATES)} templates; "
          f"vocab {len(vocab)} ({len(merges)} merges); tokens per training example: "
          f"mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}")


if __name__ == "__main__":
    main()
