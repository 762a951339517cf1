"""Settings: env/.env/flag precedence (alternatives too), colour and bits boundaries, error messages,
the example file."""

from __future__ import annotations

from pathlib import Path

import pytest

from icsd.core.params import Dither, Resample, Strategy
from icsd.errors import SettingsError
from icsd.settings import Settings, load_settings, unknown_env_warnings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ICSD_* from the developer's shell, and no stray .env: run in an empty folder."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("ICSD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_match_the_original_system() -> None:
    params = load_settings().validate_all()
    assert params.strategy is Strategy.KMEANS
    assert params.colors == 16
    assert params.scale == 5
    assert params.resample is Resample.BOX
    assert params.dither is Dither.NONE and params.dither_strength == 1.0  # exact mapping, as the original
    assert not params.grayscale


@pytest.mark.parametrize(("bits", "colors"), [(1, 2), (4, 16), (8, 256)])
def test_bits_give_two_to_the_bits_colours(monkeypatch: pytest.MonkeyPatch, bits: int, colors: int) -> None:
    monkeypatch.setenv("ICSD_BITS", str(bits))
    assert load_settings().params().colors == colors


@pytest.mark.parametrize("colors", [2, 256])
def test_colour_boundaries_accepted(monkeypatch: pytest.MonkeyPatch, colors: int) -> None:
    monkeypatch.setenv("ICSD_COLORS", str(colors))
    assert load_settings().params().colors == colors


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ICSD_COLORS": "1"}, "ICSD_COLORS must be between 2 and 256, got 1"),
        ({"ICSD_COLORS": "257"}, "ICSD_COLORS must be between 2 and 256, got 257"),
        ({"ICSD_BITS": "0"}, "ICSD_BITS must be between 1 and 8, got 0"),
        ({"ICSD_BITS": "9"}, "ICSD_BITS must be between 1 and 8, got 9"),
        ({"ICSD_BITS": "4", "ICSD_COLORS": "16"}, "set ICSD_COLORS or ICSD_BITS, not both"),
        ({"ICSD_STRATEGY": "median"}, "ICSD_STRATEGY: unknown strategy 'median'"),
        ({"ICSD_RESAMPLE": "nearest"}, "ICSD_RESAMPLE: unknown resample 'nearest': use one of box, lanczos, stride"),
        ({"ICSD_SCALE": "0.5"}, "ICSD_SCALE must be >= 1, got 0.5"),
        ({"ICSD_ALPHA": "drop"}, "ICSD_ALPHA: unknown alpha 'drop': use one of keep, flatten"),
        ({"ICSD_BACKGROUND": "white"},
         "ICSD_BACKGROUND must be a colour like #rrggbb (e.g. #ffffff for white), got 'white'"),
        ({"ICSD_DITHER": "floyd"}, "ICSD_DITHER: unknown dither 'floyd': use one of none, diffuse, ordered"),
        ({"ICSD_DITHER_STRENGTH": "1.5"}, "ICSD_DITHER_STRENGTH must be between 0 and 1, got 1.5"),
        ({"ICSD_DITHER_STRENGTH": "nan"}, "ICSD_DITHER_STRENGTH must be a finite number between 0 and 1, got nan"),
        ({"ICSD_RESAMPLE": "stride", "ICSD_SCALE": "2.5"}, "ICSD_RESAMPLE=stride needs a whole-number ICSD_SCALE"),
        ({"ICSD_MAX_SIZE": "big"}, "ICSD_MAX_SIZE must look like WIDTHxHEIGHT"),
        ({"ICSD_SIZE": "224x0"}, "ICSD_SIZE must look like WIDTHxHEIGHT"),
        ({"ICSD_WORKERS": "many"}, "ICSD_WORKERS: input should be a valid integer"),
        ({"ICSD_LOG_LEVEL": "LOUD"}, "ICSD_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"ICSD_ON_SUCCESS": "archive"}, "ICSD_ON_SUCCESS=archive needs ICSD_ARCHIVE_DIR"),
        ({"ICSD_MAX_ATTEMPTS": "0"}, "ICSD_MAX_ATTEMPTS must be >= 1, got 0"),
        ({"ICSD_MAX_PIXELS": "200000000"}, "ICSD_MAX_PIXELS must be between 1 and 178956970, got 200000000"),
        ({"ICSD_SCALE": "inf"}, "ICSD_SCALE must be a finite number >= 1, got inf"),
        ({"ICSD_SCALE": "nan"}, "ICSD_SCALE must be a finite number >= 1, got nan"),
        ({"ICSD_STABLE_SECONDS": "nan"}, "ICSD_STABLE_SECONDS must be a finite number >= 0, got nan"),
        ({"ICSD_STABLE_SECONDS": "inf"}, "ICSD_STABLE_SECONDS must be a finite number >= 0, got inf"),
        ({"ICSD_DRAIN_SECONDS": "nan"}, "ICSD_DRAIN_SECONDS must be >= 0, got nan"),
        ({"ICSD_RESCAN_SECONDS": "0"}, "ICSD_RESCAN_SECONDS must be > 0, got 0.0"),
        ({"ICSD_OUTPUT_DIR": "out", "ICSD_FAILED_DIR": "out"},
         "ICSD_FAILED_DIR (out) is ICSD_OUTPUT_DIR (out) or a folder in it, where outputs could overwrite originals"),
        ({"ICSD_OUTPUT_DIR": "out", "ICSD_ON_SUCCESS": "archive", "ICSD_ARCHIVE_DIR": "out/kept"},
         "ICSD_ARCHIVE_DIR (out/kept) is ICSD_OUTPUT_DIR (out) or a folder in it"),
        (
            {"ICSD_SIZE": "100000x100000"},
            "ICSD_SIZE 100000x100000 is 10000000000 pixels, more than ICSD_MAX_PIXELS (89478485): "
            "choose a smaller size",
        ),
        ({"ICSD_SIZE": "10x11", "ICSD_MAX_PIXELS": "100"},
         "ICSD_SIZE 10x11 is 110 pixels, more than ICSD_MAX_PIXELS (100): choose a smaller size"),
    ],
)
def test_bad_settings_name_the_setting(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings().validate_all()
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"scale": 0.5}, "ICSD_SCALE must be >= 1, got 0.5"),
        ({"scale": float("inf")}, "ICSD_SCALE must be a finite number >= 1, got inf"),
        ({"max_pixels": 0}, "ICSD_MAX_PIXELS must be between 1 and 178956970, got 0"),
        ({"size": "20000x20000"}, "ICSD_SIZE 20000x20000 is 400000000 pixels, more than ICSD_MAX_PIXELS (89478485)"),
    ],
)
def test_params_alone_name_the_setting(flags: dict[str, object], message: str) -> None:
    """`icsd compress` checks only params(): its errors must name ICSD_ settings, not CompressParams fields."""
    with pytest.raises(SettingsError) as caught:
        load_settings(**flags).params()
    assert caught.value.message.startswith(message)


def test_exact_size_up_to_max_pixels_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICSD_MAX_PIXELS", "100")
    monkeypatch.setenv("ICSD_SIZE", "10x10")
    assert load_settings().validate_all().size == (10, 10)


def test_strategy_aliases_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    aliases = [("so", "size-only"), ("MKM", "kmeans"), ("Fkm", "sklearn-kmeans"), ("mbkm", "sklearn-minibatch")]
    for alias, strategy in aliases:
        monkeypatch.setenv("ICSD_STRATEGY", alias)
        assert load_settings().params().strategy == strategy


def test_flag_beats_env_beats_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ICSD_COLORS=8\nICSD_SCALE=3\nICSD_SEED=7\n")
    monkeypatch.setenv("ICSD_COLORS", "32")
    settings = load_settings(colors=64)
    assert settings.params().colors == 64  # flag
    assert load_settings().params().colors == 32  # env over .env
    assert settings.scale == 3 and settings.seed == 7  # .env over defaults


def test_colour_flag_replaces_bits_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICSD_BITS", "3")
    assert load_settings(colors=100).params().colors == 100
    monkeypatch.setenv("ICSD_COLORS", "100")
    monkeypatch.delenv("ICSD_BITS")
    assert load_settings(bits=2).params().colors == 4


def test_size_rule_flag_replaces_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    """One size rule: a flag's choice wins over the environment's, whichever of the three each names."""
    monkeypatch.setenv("ICSD_SIZE", "64x64")
    by_scale = load_settings(scale=2.0).validate_all()
    assert (by_scale.scale, by_scale.max_size, by_scale.size) == (2.0, None, None)
    by_fit = load_settings(max_size="50x50").validate_all()
    assert (by_fit.max_size, by_fit.size) == ((50, 50), None)
    assert load_settings().validate_all().size == (64, 64)


def test_environment_choice_replaces_dotenv_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ICSD_COLORS=4\nICSD_SIZE=9x9\n")
    monkeypatch.setenv("ICSD_BITS", "3")
    monkeypatch.setenv("ICSD_SCALE", "2")
    params = load_settings().validate_all()
    assert (params.colors, params.scale, params.size) == (8, 2.0, None)


def test_lower_source_scale_does_not_leak_under_a_higher_size_rule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ICSD_SCALE=2.5 in .env belongs to a choice the environment replaced: not validated, not used."""
    (tmp_path / ".env").write_text("ICSD_SCALE=2.5\nICSD_RESAMPLE=stride\n")
    monkeypatch.setenv("ICSD_MAX_SIZE", "32x32")
    settings = load_settings()
    assert settings.validate_all().max_size == (32, 32)
    assert settings.scale == 5.0


@pytest.mark.parametrize(
    ("env", "dotenv", "flags", "message"),
    [
        ({"ICSD_SIZE": "9x9", "ICSD_MAX_SIZE": "5x5"}, "", {},
         "set ICSD_MAX_SIZE or ICSD_SIZE, not both: the environment sets both"),
        ({"ICSD_SCALE": "2", "ICSD_SIZE": "9x9"}, "", {},
         "set ICSD_SCALE or ICSD_SIZE, not both: the environment sets both"),
        ({"ICSD_SCALE": "2", "ICSD_MAX_SIZE": "5x5", "ICSD_SIZE": "9x9"}, "", {},
         "set one of ICSD_SCALE, ICSD_MAX_SIZE or ICSD_SIZE, not several: the environment sets all of them"),
        ({}, "ICSD_COLORS=4\nICSD_BITS=2\n", {},
         "set ICSD_COLORS or ICSD_BITS, not both (colours = 2^bits): .env sets both"),
        ({}, "", {"colors": 4, "bits": 2},
         "set ICSD_COLORS or ICSD_BITS, not both (colours = 2^bits): the command line sets both"),
    ],
)
def test_alternatives_in_one_source_conflict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], dotenv: str, flags: dict[str, object],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / ".env").write_text(dotenv)
    with pytest.raises(SettingsError) as caught:
        load_settings(**flags)
    assert caught.value.message == message


def test_a_higher_choice_settles_a_conflict_below_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ICSD_COLORS=4\nICSD_BITS=2\nICSD_SIZE=9x9\nICSD_MAX_SIZE=5x5\n")
    monkeypatch.setenv("ICSD_COLORS", "32")
    params = load_settings(scale=3.0).validate_all()
    assert (params.colors, params.scale, params.max_size, params.size) == (32, 3.0, None, None)


def test_empty_values_do_not_count_as_a_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The example file's `ICSD_BITS=` and `ICSD_SIZE=` mean "default", not "chosen"."""
    (tmp_path / ".env").write_text("ICSD_COLORS=4\nICSD_BITS=\nICSD_SIZE=\nICSD_MAX_SIZE=5x5\n")
    monkeypatch.setenv("ICSD_BITS", "")
    params = load_settings().validate_all()
    assert (params.colors, params.max_size) == (4, (5, 5))


def test_output_inside_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"ICSD_OUTPUT_DIR .* is inside ICSD_INPUT_DIR"):
        load_settings(input_dir=tmp_path / "in", output_dir=tmp_path / "in" / "out").validate_all()
    with pytest.raises(SettingsError, match=r"ICSD_OUTPUT_DIR .* is inside ICSD_INPUT_DIR"):
        load_settings(input_dir=tmp_path / "same", output_dir=tmp_path / "same").validate_all()
    with pytest.raises(SettingsError, match=r"ICSD_STATE_DIR .* is inside ICSD_INPUT_DIR"):
        load_settings(input_dir=tmp_path / "in", state_dir=tmp_path / "in" / ".state").validate_all()


def test_derived_folders_default_under_output(tmp_path: Path) -> None:
    settings = load_settings(output_dir=tmp_path / "out")
    assert settings.failed_path == tmp_path / "out" / ".failed"
    assert settings.state_path == tmp_path / "out" / ".icsd"


def test_unknown_variable_warns_with_closest_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ICSD_STRATEGIE=kmeans\n")
    warnings = unknown_env_warnings({"ICSD_COLOURS": "8", "ICSD_COLORS": "8", "ICSD_PURE_NUMPY": "1", "PATH": "/bin",
                                     "ICSD_FOO": "1", "ICSD_WORKER": "2"})
    assert warnings == [
        "unknown setting ICSD_COLOURS is ignored; did you mean ICSD_COLORS?",
        "unknown setting ICSD_FOO is ignored",  # no real setting is like it (ICSD_COLORS was suggested)
        "unknown setting ICSD_STRATEGIE is ignored; did you mean ICSD_STRATEGY?",
        "unknown setting ICSD_WORKER is ignored; did you mean ICSD_WORKERS?",
    ]


def test_example_file_documents_every_setting_with_its_default() -> None:
    lines = (ROOT / "settings.example.env").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(values) == {f"ICSD_{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        shown = values[f"ICSD_{name.upper()}"]
        default = field.default
        if default is None:
            assert shown == "", name
        elif isinstance(default, bool):
            assert shown == str(default).lower(), name
        elif isinstance(default, Path):
            assert Path(shown) == default, name
        else:
            assert type(default)(shown) == default, name


def test_example_file_loads_as_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((ROOT / "settings.example.env").read_text())
    params = load_settings().validate_all()
    assert params.colors == 16 and params.strategy is Strategy.KMEANS
    assert unknown_env_warnings({}) == []


def test_originals_may_live_in_hidden_folders_of_the_output_or_outside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs never land in hidden folders (inputs in hidden folders are not taken), so those are safe."""
    monkeypatch.setenv("ICSD_OUTPUT_DIR", "out")
    monkeypatch.setenv("ICSD_ON_SUCCESS", "archive")
    for archive in ("out/.originals", "kept", "out-archive"):
        monkeypatch.setenv("ICSD_ARCHIVE_DIR", archive)
        load_settings().validate_all()  # the default failed folder out/.failed included
