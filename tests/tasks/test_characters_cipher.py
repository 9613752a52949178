"""The character tasks (char_count, char_locate) and the shift cipher: generators, meta,
the pairing of high / low plaintexts, and verifiers on right, lenient, wrong and hostile
responses."""

import numpy as np
import pytest

from jaxlab import tasks
from jaxlab.tasks.base import TaskError
from jaxlab.tasks.characters import CharCount, CharLocate, corpus_words, ordinal, target_char_index
from jaxlab.tasks.cipher import ShiftCipher, normalize_answer, scramble_word, shift_text

HOSTILE = ["9" * 10_000, "x" * 100_000, "\x00\xff junk \u202e", "__import__('os').system('x')", "", "\n\n",
           "1e9999", "٣", "-" * 5000]


def test_char_count_prompt_answer_and_meta():
    task = CharCount()
    rng = np.random.default_rng(0)
    for d in range(4, 9):
        e = task.generate(rng, d)
        word, letter = e.meta["word"], e.meta["letter"]
        assert len(word) == d and word in corpus_words(d) and letter in word
        assert e.prompt[e.meta["word_offset"]:e.meta["word_offset"] + d] == word
        assert e.answer == str(word.count(letter)) and e.meta["positions"] == [
            i + 1 for i, c in enumerate(word) if c == letter]
        assert task.verify(e, e.answer) == 1.0
        assert task.verify(e, f'The letter "{letter}" appears {e.answer} times.') == 1.0
        assert task.verify(e, str(int(e.answer) + 1)) == 0.0


def test_char_locate_targets_and_ordinals():
    rng = np.random.default_rng(1)
    first, anywhere = CharLocate(), CharLocate(occurrences="any", source="random")
    for _ in range(50):
        e = first.generate(rng, 7)
        word, letter = e.meta["word"], e.meta["letter"]
        assert e.meta["occurrence"] == 1 and e.meta["position"] == word.index(letter) + 1 == int(e.answer)
        assert e.prompt[target_char_index(e.meta)] == letter and "the first" in e.prompt
        assert first.verify(e, e.answer) == 1.0 and first.verify(e, f"It is at position {e.answer}.") == 1.0
    seen = set()
    for _ in range(200):
        e = anywhere.generate(rng, 12)
        word, letter, n = e.meta["word"], e.meta["letter"], e.meta["occurrence"]
        assert word[e.meta["position"] - 1] == letter and word[:e.meta["position"]].count(letter) == n
        assert f"the {ordinal(n)} \"{letter}\"" in e.prompt and e.prompt[target_char_index(e.meta)] == letter
        seen.add(n)
    assert max(seen) >= 2  # random 12-letter words repeat letters
    assert [ordinal(n) for n in (1, 3, 11, 12, 13, 21, 22, 103)] == [
        "first", "third", "11th", "12th", "13th", "21st", "22nd", "103rd"]
    # the second "r" of "error" is at 3; the first at 2
    meta = {"task": "char_locate", "difficulty": 5, "word": "error", "letter": "r", "occurrence": 2, "position": 3,
            "word_offset": 0}
    assert anywhere.verify(meta, "3") == 1.0 and anywhere.verify(meta, "2") == 0.0
    assert anywhere.verify({**meta, "occurrence": 4}, "3") == 0.0  # no fourth "r": nothing is right


def test_character_task_settings_are_checked():
    with pytest.raises(TaskError, match="source='bpe'"):
        CharCount(source="bpe")
    with pytest.raises(TaskError, match="occurrences='last'"):
        CharLocate(occurrences="last")
    with pytest.raises(TaskError, match=r"must lie in \[3, 16\]"):
        CharCount(train_difficulty=(2, 5))


def test_shift_text_known_answers_and_inverse():
    assert shift_text("hello world", 13) == "uryyb jbeyq"
    assert shift_text("abz", 1) == "bca" and shift_text("Hello, Z!", 3) == "Khoor, C!"
    rng = np.random.default_rng(2)
    for k in range(1, 26):
        text = "".join(chr(97 + int(i)) for i in rng.integers(0, 26, size=30))
        assert shift_text(shift_text(text, k), 26 - k) == text and shift_text(text, k) != text


def test_shift_cipher_pairs_high_and_low_plaintexts():
    for shift in (1, 13, 25):
        for seed in range(20):
            high = ShiftCipher(shift=shift).generate(np.random.default_rng(seed), 3)
            low = ShiftCipher(shift=shift, plaintext="low").generate(np.random.default_rng(seed), 3)
            assert high.meta["original"] == low.meta["original"] == high.answer
            assert high.meta["kind"] == "high" and low.meta["kind"] == "low" and low.meta["shift"] == shift
            hw, lw = high.answer.split(), low.answer.split()
            assert len(hw) == len(lw) == 3 and [sorted(w) for w in hw] == [sorted(w) for w in lw]
            for e in (high, low):
                assert e.meta["ciphertext"] == shift_text(e.answer, shift) and f'"{e.meta["ciphertext"]}"' in e.prompt
                assert f"rot-{shift} " in e.prompt and len(e.answer) <= 40
    lows = [ShiftCipher(plaintext="low").generate(np.random.default_rng(s), 2) for s in range(30)]
    assert sum(e.answer != e.meta["original"] for e in lows) >= 25
    assert scramble_word("aaa", np.random.default_rng(0)) == "aaa"


def test_shift_cipher_verifier_is_lenient_on_form_and_exact_on_content():
    task = ShiftCipher()
    e = task.generate(np.random.default_rng(3), 2)
    text = e.answer
    for good in (text, text.upper(), f'The decoded text is: "{text}".', f"Original text: {text}",
                 f"thinking...\n  {text}  "):
        assert task.verify(e, good) == 1.0, good
    for bad in (text + " x", text.replace(" ", ""), e.meta["ciphertext"], f"{text}!", f"{text} 2"):
        assert task.verify(e, bad) == 0.0, bad
    assert normalize_answer("The answer: 'hello  world'.") == "hello world"
    assert normalize_answer("hello, world") is None and normalize_answer("a" * 600) is None


@pytest.mark.parametrize("name", ["char_count", "char_locate", "shift_cipher"])
def test_hostile_responses_score_zero_and_never_raise(name):
    task = tasks.get(name)
    e = task.generate(np.random.default_rng(4), task.train_difficulty[0])
    for response in HOSTILE:
        assert task.verify(e, response) == 0.0
        assert task.verify(e, response.encode("utf-8", "surrogatepass")) == 0.0
    assert task.verify(e, "x" * 100_000 + "\n" + e.answer) == 0.0  # over the size bound, right answer or not
    assert tasks.verify(e.meta, e.answer) == 1.0  # the registry dispatches on meta["task"]
    with pytest.raises(TypeError):
        task.verify(e, None)


def test_shift_cipher_settings_are_checked():
    for kwargs, match in ((dict(shift=0), "shift=0"), (dict(shift=26), "shift=26"), (dict(shift=True), "shift=True"),
                          (dict(plaintext="medium"), "plaintext='medium'"), (dict(max_chars=4), "max_chars=4")):
        with pytest.raises(TaskError, match=match):
            ShiftCipher(**kwargs)
