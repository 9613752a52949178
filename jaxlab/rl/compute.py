"""Training compute of SFT and RL steps, to compare the two at equal compute (Chu et al.
2025, "SFT Memorizes, RL Generalizes", count FLOPs as in Kaplan et al. 2020: 6 N per trained
token, 2 N per token of inference).

For a model of N parameters (attention over the context left out, as in those papers):

    SFT step:  6 N B T                      B packed rows of T tokens, forward and backward
    RL step:   6 N R W + 2 N R W / E        R = prompts_per_step x group_size rows of W columns
                                            trained; the rollout (prefill and decoding of the
                                            same R x W tokens, one forward each) is shared by
                                            the E = ppo_epochs steps that use it

N cancels in a ratio, so :func:`matched_sft_steps` needs no model size.
"""

from __future__ import annotations


def sft_step_flops(n_params: float, batch_size: int, seq_len: int) -> float:
    """6 N B T."""
    return 6.0 * n_params * batch_size * seq_len


def rl_step_flops(n_params: float, rows: int, width: int, ppo_epochs: int = 1) -> float:
    """6 N R W + 2 N R W / E (module docstring)."""
    if ppo_epochs < 1:
        raise ValueError(f"ppo_epochs must be >= 1, got {ppo_epochs}")
    return 6.0 * n_params * rows * width + 2.0 * n_params * rows * width / ppo_epochs


def matched_sft_steps(rl_steps: int, *, rows: int, width: int, ppo_epochs: int, batch_size: int,
                      seq_len: int, multiple_of: int = 1) -> int:
    """The SFT steps whose compute equals ``rl_steps`` RL steps:

        S_sft = round(S_rl * rl_step_flops / sft_step_flops / m) * m,  at least m

    with m = ``multiple_of`` (so evaluation points can split both runs evenly).
    E.g. 100 RL steps of 128 rows x 48 columns, E = 1, against SFT batches of 16 x 128 tokens:
    100 * (8 * 128 * 48) / (6 * 16 * 128) = 400."""
    ratio = rl_step_flops(1.0, rows, width, ppo_epochs) / sft_step_flops(1.0, batch_size, seq_len)
    m = int(multiple_of)
    if m < 1 or rl_steps < 1:
        raise ValueError(f"need rl_steps >= 1 and multiple_of >= 1, got {rl_steps}, {multiple_of}")
    return max(m, int(round(rl_steps * ratio / m)) * m)
