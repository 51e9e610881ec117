"""SamplingConfig validation and the config part of cache keys."""

from __future__ import annotations

import pytest

from workbench.config import SamplingConfig, make_config
from workbench.errors import ConfigError


def test_defaults_are_true_ancestral_sampling():
    config = SamplingConfig()
    assert (config.temperature, config.top_p, config.top_k, config.min_p) == (1.0, 1.0, 0, 0.0)
    assert config.repetition_penalty == 1.0


@pytest.mark.parametrize(
    "fields, field_name",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"min_p": 2}, "min_p"),
        ({"stop": [""]}, "stop"),
        ({"temprature": 1.0}, "temprature"),  # a typo is an error, not silently ignored
    ],
)
def test_bad_values_name_the_field(fields, field_name):
    with pytest.raises(ConfigError) as info:
        make_config(**fields)
    assert field_name in str(info.value)


def test_stop_accepts_a_single_string():
    assert make_config(stop="\n").stop == ("\n",)


def test_cache_fields_ignore_stop_order_and_greedy_truncation():
    a = make_config(stop=["a", "b"], temperature=0, top_p=0.5)
    b = make_config(stop=["b", "a"], temperature=0, top_p=0.9, top_k=3)
    assert a.cache_digest() == b.cache_digest()
    # When sampling, truncation changes the output, so it changes the key.
    assert make_config(top_p=0.5).cache_digest() != make_config(top_p=0.9).cache_digest()


@pytest.mark.parametrize(
    "change", [{"temperature": 0.7}, {"top_k": 5}, {"max_tokens": 9}, {"stop": ["x"]}, {"top_logprobs": 2},
               {"repetition_penalty": 1.2}, {"min_p": 0.1}]
)
def test_every_output_field_changes_the_digest(change):
    assert make_config(**change).cache_digest() != SamplingConfig().cache_digest()


def test_with_extra_stops_merges_without_duplicates():
    config = make_config(stop=["\nUser:"]).with_extra_stops(("\nUser:", "END"))
    assert config.stop == ("\nUser:", "END")
