"""`icsd compare`'s lists: colours, strategies, dithering, and the variants they make."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from icsd.core import CompressParams, Strategy
from icsd.report.options import (
    DITHERS,
    Variant,
    parse_colors,
    parse_dithers,
    parse_strategies,
    plan,
    supported_dithers,
)
from icsd.report.run import sample


def test_colors_parse_in_order_without_repeats() -> None:
    assert parse_colors("8, 16,32,16") == [8, 16, 32]


@pytest.mark.parametrize("text", ["300", "1", "8,x", "-4", ",", ""])
def test_bad_colors_are_one_line_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse_colors(text)
    assert "\n" not in str(caught.value)


def test_strategies_accept_all_names_and_aliases() -> None:
    assert parse_strategies("all") == list(Strategy)
    assert parse_strategies("mkm,SO,sklearn-minibatch,kmeans") == [
        Strategy.KMEANS, Strategy.SIZE_ONLY, Strategy.SKLEARN_MINIBATCH]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown strategy 'XKM'"):
        parse_strategies("MKM,XKM")


def test_dither_accepts_only_what_the_core_supports() -> None:
    assert parse_dithers("none") == ["none"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown dither 'sierra'"):
        parse_dithers("none,sierra")
    # Every entry of the table is offered: none is ahead of the core's CompressParams
    assert supported_dithers() == list(DITHERS)
    for name in DITHERS:
        Variant(Strategy.KMEANS, 16, name).params(CompressParams())


def test_plan_runs_size_only_once_and_every_other_combination() -> None:
    variants = plan([Strategy.SIZE_ONLY, Strategy.KMEANS, Strategy.SKLEARN_MINIBATCH], [8, 32], ["none"])
    assert [v.label for v in variants] == ["SO", "MKM K8", "MKM K32", "MBKM K8", "MBKM K32"]
    assert [v.series for v in variants] == ["SO", "MKM", "MKM", "MBKM", "MBKM"]
    assert Variant(Strategy.KMEANS, 8, "diffuse").label == "MKM K8 diffuse"  # how a dithering option shows
    assert Variant(Strategy.KMEANS, 8, "diffuse").series == "MKM diffuse"


def test_variant_params_keep_the_size_settings() -> None:
    base = CompressParams(scale=3, resample="lanczos", grayscale=True, seed=7)
    params = Variant(Strategy.SKLEARN_KMEANS, 64).params(base)
    assert params == dataclasses.replace(base, strategy=Strategy.SKLEARN_KMEANS, colors=64)
    assert Variant(Strategy.SIZE_ONLY).params(base).strategy is Strategy.SIZE_ONLY


def test_sample_spreads_over_the_list() -> None:
    files = [f"{i:02d}.jpg" for i in range(10)]
    assert sample(files, 5) == ["00.jpg", "02.jpg", "04.jpg", "06.jpg", "08.jpg"]  # type: ignore[arg-type]
    assert sample(files, 20) == files  # type: ignore[arg-type]
    assert sample(files, None) == files  # type: ignore[arg-type]
