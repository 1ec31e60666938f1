"""ftci.data.minhash against an independent, slow reference: Python sets of shingle tuples."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftci.data import minhash
from ftci.data.records import normalise_text


def reference_shingles(text: str, shingle: str = "word") -> set[tuple[str, ...] | str]:
    """The definition, spelt out: word 3-grams (fewer words: one shingle of them all), char
    5-grams (shorter: the whole text), over the normalised text."""
    norm = normalise_text(text)
    if shingle == "char":
        k = min(minhash.CHAR_NGRAM, len(norm))
        return {norm[i:i + k] for i in range(len(norm) - k + 1)} if norm else set()
    # words: runs of letters, marks and digits (so Devanagari vowel signs stay in their word)
    words = "".join(c if unicodedata.category(c)[0] in "LMN" else " " for c in norm).split()
    k = min(minhash.WORD_NGRAM, len(words))
    return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)} if words else set()


def reference_jaccard(a: str, b: str, shingle: str = "word") -> float:
    sa, sb = reference_shingles(a, shingle), reference_shingles(b, shingle)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def random_texts(count: int, seed: int, low: int = 30, high: int = 60) -> list[str]:
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9)))
                  for _ in range(3000)]
    return [" ".join(rng.choices(vocabulary, k=rng.randint(low, high))) for _ in range(count)]


def edited(text: str, rng: random.Random) -> str:
    """A near-duplicate: one word replaced, inserted or deleted, and the case changed."""
    words = text.split()
    at = rng.randrange(1, len(words) - 1)
    kind = rng.choice(["replace", "insert", "delete"])
    if kind == "replace":
        words[at] = "zzedit"
    elif kind == "insert":
        words.insert(at, "zzextra")
    else:
        del words[at]
    return " ".join(words).upper()


TRICKY = ["", " ", "  a  b ", "Straße", "ÅNGSTRÖM", "ﬁle", "x\u00a0y", "tab\there", "line\nbreak",
          "\u2003em space", "Ｆｕｌｌｗｉｄｔｈ", "İstanbul", "ǅ", "a\x1cb", "trailing ", "ok"]


@pytest.mark.parametrize("text", TRICKY)
def test_normalise_many_equals_normalise_text_on_tricky_text(text: str) -> None:
    assert minhash.normalise_many([text]) == [normalise_text(text)]


@given(st.lists(st.text(), max_size=5))
def test_normalise_many_equals_normalise_text(texts: list[str]) -> None:
    assert minhash.normalise_many(texts) == [normalise_text(text) for text in texts]


@pytest.mark.parametrize("shingle", ["word", "char"])
def test_shingle_sets_have_the_reference_sizes(shingle: str) -> None:
    texts = random_texts(200, seed=1, low=0, high=12) + [
        "", "?!", "hello", "Hello, world!", "a b c", "नमस्ते दुनिया", "東京は晴れ", "abcd"]
    sets = minhash.shingle_sets(texts, shingle)  # type: ignore[arg-type]
    assert sets.counts.tolist() == [len(reference_shingles(t, shingle)) for t in texts]


def test_words_keep_their_combining_marks() -> None:
    # Devanagari vowel signs are marks (Mn/Mc): splitting there would break every word
    assert minhash.shingle_sets(["नमस्ते दुनिया"]).counts.tolist() == [1]


@pytest.mark.parametrize("shingle", ["word", "char"])
def test_exact_jaccard_equals_the_reference(shingle: str) -> None:
    rng = random.Random(2)
    base = random_texts(60, seed=2, low=3, high=40)
    texts = base + [edited(t, rng) if len(t.split()) > 3 else t for t in base]
    sets = minhash.shingle_sets(texts, shingle)  # type: ignore[arg-type]
    left = np.arange(60)
    right = np.concatenate([np.arange(60, 120)[:30], rng.sample(range(120), 30)])
    got = minhash.exact_jaccard(sets, left, right)
    want = [reference_jaccard(texts[a], texts[b], shingle)
            for a, b in zip(left, right, strict=True)]
    assert got == pytest.approx(want)


def test_lsh_shape_meets_the_recall_target() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        bands, rows = minhash.lsh_shape(threshold)
        assert bands * rows <= minhash.NUM_PERM
        assert 1 - (1 - threshold**rows) ** bands >= minhash.TARGET_RECALL_AT_THRESHOLD
    assert minhash.lsh_shape(0.8) == (21, 6)


def planted_corpus(count: int = 3000, copies: int = 300) -> tuple[list[str], list[tuple[int, int]]]:
    rng = random.Random(3)
    texts = random_texts(count, seed=3)
    planted = []
    for base in rng.sample(range(count), copies):
        planted.append((base, len(texts)))
        texts.append(edited(texts[base], rng))
    return texts, planted


def test_edited_copies_are_found_and_every_cluster_is_verified() -> None:
    texts, planted = planted_corpus()
    clusters = minhash.near_duplicate_clusters(texts, 0.8)
    cluster_of = {index: number for number, cluster in enumerate(clusters) for index in cluster}
    due = [(a, b) for a, b in planted if reference_jaccard(texts[a], texts[b]) >= 0.8]
    found = [(a, b) for a, b in due if a in cluster_of and cluster_of[a] == cluster_of.get(b)]
    assert len(due) >= 200  # the corpus really plants pairs above the threshold
    assert len(found) / len(due) >= 0.95
    for cluster in clusters:  # precision: each cluster is linked by pairs with Jaccard >= 0.8
        linked = {cluster[0]}
        for _ in cluster:
            linked |= {b for b in cluster for a in linked
                       if reference_jaccard(texts[a], texts[b]) >= 0.8}
        assert linked == set(cluster)
    assert all(len(cluster) <= 3 for cluster in clusters)  # unrelated texts never join


def test_clusters_are_deterministic_and_independent_of_order() -> None:
    texts, _ = planted_corpus(1000, 100)
    first = minhash.near_duplicate_clusters(texts, 0.8)
    assert first == minhash.near_duplicate_clusters(texts, 0.8)
    order = list(range(len(texts)))
    random.Random(4).shuffle(order)
    shuffled = minhash.near_duplicate_clusters([texts[i] for i in order], 0.8)
    assert sorted(sorted(order[i] for i in c) for c in shuffled) == sorted(first)


def test_short_texts_still_compare() -> None:
    texts = ["hello world", "Hello,   WORLD!", "hello there", "hi", "HI", "?", "?"]
    assert minhash.near_duplicate_clusters(texts, 0.8) == [[0, 1], [3, 4]]


def test_identical_texts_form_one_cluster_however_many() -> None:
    texts = ["the same question asked again and again"] * 2000 + random_texts(50, seed=5)
    assert minhash.near_duplicate_clusters(texts, 0.8) == [list(range(2000))]


def test_char_shingles_work_without_spaces() -> None:
    texts = ["東京は今日も晴れています", "東京は今日も晴れていますね", "大阪は雨が降っています"]
    assert minhash.near_duplicate_clusters(texts, 0.8, "char") == [[0, 1]]
    assert minhash.near_duplicate_clusters(texts, 0.8, "word") == []


def test_cross_near_duplicates_maps_both_sides() -> None:
    rng = random.Random(6)
    corpus = random_texts(500, seed=6)
    queries = [edited(corpus[42], rng), random_texts(1, seed=7)[0], corpus[7]]
    pairs = minhash.cross_near_duplicates(queries, corpus, 0.8)
    got = {(q, c) for q, c, _ in pairs}
    want = {(0, 42), (2, 7)} if reference_jaccard(queries[0], corpus[42]) >= 0.8 else {(2, 7)}
    assert got == want
    assert all(score >= 0.8 for _, _, score in pairs)


def test_unknown_shingle_is_rejected() -> None:
    with pytest.raises(ValueError, match="word' or 'char"):
        minhash.shingle_sets(["x"], "token")  # type: ignore[arg-type]


@pytest.mark.parametrize("shingle", ["word", "char"])
@pytest.mark.parametrize("texts", [[], [""], ["", "  "], ["abc"], ["ab", "c"], ["!!", "??"]])
def test_degenerate_inputs_do_not_break(texts: list[str], shingle: str) -> None:
    sets = minhash.shingle_sets(texts, shingle)  # type: ignore[arg-type]
    assert sets.counts.tolist() == [len(reference_shingles(t, shingle)) for t in texts]
    doubled = minhash.near_duplicate_clusters(texts * 2, 0.8, shingle)  # type: ignore[arg-type]
    with_shingles = [i for i, t in enumerate(texts) if reference_shingles(t, shingle)]
    assert doubled == [[i, i + len(texts)] for i in with_shingles]
