"""Self-augmented prompting: the stage-1 and stage-2 conversations, built around a fake model
that records what it is asked."""

import pytest

from jaxlab.ttc.self_augment import (
    DESCRIBE_REQUEST,
    AugmentedShot,
    augmented_messages,
    describe_request,
    direct_messages,
    self_augment,
    split_question,
)


def test_split_question_takes_the_text_after_the_last_blank_line():
    assert split_question("Table:\n| a |\n\nintro\n\nWhat is a?\nAnswer: ") == ("Table:\n| a |\n\nintro",
                                                                             "What is a?\nAnswer: ")
    for bad in ("no blank line here", "\n\nquestion only", "context only\n\n  "):
        with pytest.raises(ValueError, match="blank line"):
            split_question(bad)


def test_direct_messages_put_shots_as_chat_turns_before_the_question():
    m = direct_messages("Be brief.", [("P1", "A1"), ("P2", "A2")], "Q")
    assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [x["content"] for x in m] == ["Be brief.", "P1", "A1", "P2", "A2", "Q"]
    assert direct_messages(None, [], "Q") == [{"role": "user", "content": "Q"}]


def test_augmented_messages_give_the_description_back_as_the_models_turn():
    m = augmented_messages("S", [AugmentedShot("C1", "D1", "Q1", "A1")], "C", "D", "Q")
    assert [x["content"] for x in m] == ["S", describe_request("C1"), "D1", "Q1", "A1", describe_request("C"), "D", "Q"]
    assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert describe_request("C").startswith("C\n\n") and describe_request("C").endswith(DESCRIBE_REQUEST)


def test_self_augment_describes_each_context_once_then_asks_with_the_descriptions():
    calls = []

    def complete(conversations, stage):
        calls.append((stage, conversations))
        if stage == "describe":  # the description names the context it was asked about
            return ["desc of " + c[-1]["content"].split("\n\n")[0] for c in conversations]
        return [f"answer {i}" for i in range(len(conversations))]

    shots = [("SC\n\nSQ", "SA")]
    out = self_augment(complete, "S", [(shots, "C1\n\nQ1"), (shots, "C2\n\nQ2")])
    assert [s for s, _ in calls] == ["describe", "answer"]
    # the shared shot context is described once, then each problem's context
    assert [c[-1]["content"] for c in calls[0][1]] == [describe_request(x) for x in ("SC", "C1", "C2")]
    assert all(c[0] == {"role": "system", "content": "S"} and len(c) == 2 for c in calls[0][1])
    assert out["descriptions"] == ["desc of C1", "desc of C2"]
    assert out["shot_descriptions"] == {"SC": "desc of SC"}
    assert out["responses"] == ["answer 0", "answer 1"]
    second = out["messages"][1]
    assert second == augmented_messages("S", [AugmentedShot("SC", "desc of SC", "SQ", "SA")], "C2", "desc of C2", "Q2")
    assert calls[1][1] == out["messages"]


def test_self_augment_refuses_a_completion_function_that_drops_rows():
    with pytest.raises(ValueError, match="returned 1 texts for 2"):
        self_augment(lambda convs, stage: ["x"], None, [([], "C1\n\nQ1")] * 2)
