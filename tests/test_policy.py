"""Bands → decision, per-call overrides, seed texts: pure policy, no model."""
import pytest
from pydantic import ValidationError

from gate.config import Bands, Seeds, load_settings, ConfigError
from gate.policy import decide, resolve_bands, resolve_threshold, seed_text
from gate.turns import TurnError


@pytest.mark.parametrize("p, expected", [
    (0.0, "abstain"), (0.399, "abstain"), (0.4, "hedge"), (0.699, "hedge"), (0.7, "answer"), (1.0, "answer")])
def test_band_edges_go_up(p, expected):
    assert decide(p, Bands(low=0.4, high=0.7)) == expected


def test_equal_bands_leave_no_hedge():
    bands = Bands(low=0.5, high=0.5)
    assert [decide(p, bands) for p in (0.49, 0.5)] == ["abstain", "answer"]


@pytest.mark.parametrize("low, high", [(0.8, 0.2), (-0.1, 0.5), (0.2, 1.5)])
def test_invalid_bands_rejected(low, high):
    with pytest.raises(ValidationError, match="0 <= low <= high <= 1"):
        Bands(low=low, high=high)
    with pytest.raises(TurnError) as err:
        resolve_bands(Bands(), (low, high))
    assert err.value.param == "bands"


def test_invalid_bands_in_config_name_the_key(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("policy:\n  bands: {low: 0.9, high: 0.1}\n")
    with pytest.raises(ConfigError, match="policy.bands"):
        load_settings(path)


def test_override_wins_and_none_keeps_config():
    configured = Bands(low=0.4, high=0.7)
    assert resolve_bands(configured, None) is configured
    chosen = resolve_bands(configured, (0.1, 0.2))
    assert (chosen.low, chosen.high) == (0.1, 0.2)
    assert decide(0.3, chosen) == "answer" and decide(0.3, configured) == "abstain"


def test_malformed_override_is_a_turn_error():
    with pytest.raises(TurnError):
        resolve_bands(Bands(), (0.5,))


def test_seed_texts_state_percent_and_come_from_config():
    seeds = Seeds()
    assert "83%" in seed_text(seeds, "answer", 0.834)
    assert "50%" in seed_text(seeds, "hedge", 0.5)
    assert "7%" in seed_text(seeds, "abstain", 0.07)
    custom = Seeds(answer="Sure at {pct} percent.")
    assert seed_text(custom, "answer", 0.9) == "Sure at 90 percent."


def test_seed_with_unknown_placeholder_rejected():
    with pytest.raises(ValidationError, match="seeds.hedge"):
        Seeds(hedge="unsure {percent}")


@pytest.mark.parametrize("p_factual, expected", [(0.0, "pass"), (0.49, "pass"), (0.5, "abstain"), (None, "abstain")])
def test_turns_that_are_not_knowledge_questions_pass(p_factual, expected):
    """Below the applicability threshold the decision is `pass` whatever P(knows) says; without a head, no pass."""
    assert decide(0.1, Bands(), p_factual, 0.5) == expected


def test_pass_gets_no_seed():
    assert seed_text(Seeds(), "pass", 0.9) is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5"])
def test_threshold_override_must_be_a_probability(bad):
    with pytest.raises(TurnError) as err:
        resolve_threshold(0.5, bad)
    assert err.value.param == "factual_threshold"
    assert resolve_threshold(0.5, None) == 0.5 and resolve_threshold(0.5, 0.2) == 0.2
