"""ranktune.BM25Retriever and templates with retrieved exemplars or a {context} slot
(docs/retrieval.md). The scores are checked against the BM25 formula worked by hand."""

import math

import pytest

import ranktune

from conftest import ROOT, SHARED, need

FRUIT = ["apples and pears", "apples apples bananas", "cherry pie", "Apples, pears & plums!"]


def test_scores_are_okapi_bm25_by_hand():
    r = ranktune.BM25Retriever(FRUIT)
    # N = 4, lengths 3, 3, 2, 3: avgdl = 2.75; idf(apples) = ln(1 + 1.5/3.5), idf(pears) = ln 2.
    k3 = 1.5 * (0.25 + 0.75 * 3 / 2.75)
    d0 = (math.log(10 / 7) + math.log(2)) * 2.5 / (1 + k3)
    d1 = math.log(10 / 7) * 5 / (2 + k3)
    assert r.score("apples pears", 0) == pytest.approx(d0, rel=1e-12)
    assert r.score("apples pears", 1) == pytest.approx(d1, rel=1e-12)
    hits = r.search("Pears? APPLES.", k=4)
    assert [i for i, _ in hits] == [0, 3, 1, 2]  # d0 and d3 tie: corpus order
    assert hits[0][1] == pytest.approx(d0) and hits[3][1] == 0.0
    assert r.retrieve("apples and pears", k=1) == ["Apples, pears & plums!"]  # the query itself is skipped
    assert len(r) == 4 and r.source == "built"
    assert ranktune.BM25Retriever(FRUIT, k1=1.2, b=0.0).score("apples", 1) == pytest.approx(
        math.log(10 / 7) * 2 * 2.2 / 3.2)
    assert ranktune.retrieval.bm25_tokens("Äpfel cost $1,000.50!") == ["äpfel", "cost", "1000.50"]


def test_the_cache_file_is_used_and_a_corrupt_one_rebuilt(tmp_path):
    cache = tmp_path / "fruit.bm25"
    assert ranktune.BM25Retriever(FRUIT, cache_file=cache).source == "built (no cache yet)"
    assert ranktune.BM25Retriever(FRUIT, cache_file=cache).source == "cache hit"
    assert ranktune.BM25Retriever(FRUIT[:3], cache_file=cache).source == "rebuilt (stale cache)"
    cache.write_bytes(b"not an index")
    assert ranktune.BM25Retriever(FRUIT[:3], cache_file=cache).source == "rebuilt (corrupt cache)"


def test_a_context_template_from_examples(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKTUNE_CACHE_DIR", str(tmp_path))
    t = ranktune.templates.load(str(ROOT / "examples" / "retrieval" / "qa-context.yaml"))
    assert t.retrieves_context and not t.retrieves_exemplars
    context = t.context_for("How much does a late book cost per day?")
    assert context.startswith("Late returns cost 25 cents per book per day")
    assert context in t.render_prompt("How much does a late book cost per day?")


def test_retrieved_gsm8k_exemplars(tmp_path, monkeypatch):
    need(SHARED / "data" / "gsm8k" / "train.jsonl")
    monkeypatch.setenv("RANKTUNE_CACHE_DIR", str(tmp_path))
    t = ranktune.templates.load(str(ROOT / "examples" / "retrieval" / "gsm8k-8shot-retrieved.yaml"))
    assert t.retrieves_exemplars and t.shots == 8
    train = ranktune.gsm8k.load(str(SHARED / "data" / "gsm8k" / "train.jsonl"))
    question = train[5]["question"]
    exemplars = t.exemplars_for(question)
    assert len(exemplars) == 8 and question not in [e["question"] for e in exemplars]
    r = ranktune.BM25Retriever([e["question"] for e in train])
    assert [e["question"] for e in exemplars] == r.retrieve(question, k=8)
    assert "<<" not in exemplars[0]["rationale"]  # strip_calculator: true
    fixed = t.with_fixed_exemplars()
    assert not fixed.retrieves_exemplars and fixed.exemplars_for(question) == t.few_shot
    assert fixed.render_prompt(question) == ranktune.templates.load("gsm8k-8shot").render_prompt(question)
