"""The message a failed quantization gate ends `ftci release` with (exit 1): the numbers, the
worst items (ids and labels, never item text) and what to change."""

from __future__ import annotations

from ftci.contracts.release import GateSummary
from ftci.release.flow import _gate_message


def test_a_failed_gate_names_the_numbers_the_worst_items_and_the_fix() -> None:
    gate = GateSummary(
        metric="accuracy", engine="vllm 0.32.0 (cpu)", items=404, merged=0.941, quantized=0.902,
        delta=-0.039, ci_low=-0.058, ci_high=-0.021, margin=0.01, alpha=0.05, passed=False,
        worst=[{"id": f"item-{n}", "digest": "ab" * 32, "expected": "card_arrival",
                "merged": "card_arrival", "quantized": "lost_or_stolen_card",
                "input": "my card number is 4111 1111 1111 1111"} for n in range(8)])
    message = _gate_message(gate)
    first = message.splitlines()[0]
    assert "FAILED" in first and "0.902 quantized vs 0.941 merged on 404" in first
    assert "Δ -0.039" in first and "[-0.058, -0.021]" in first
    assert "largest accepted drop is 0.01" in first and "release.max_quantization_drop" in first
    shown = [line for line in message.splitlines() if line.startswith("  - ")]
    assert len(shown) == 5 and shown[0].startswith("  - item-0: expected 'card_arrival'")
    assert "4111" not in message  # item text is not printed
    assert message.splitlines()[-1].startswith("Fix: ")
