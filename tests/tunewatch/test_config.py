from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewatch import ConfigError, build_config, load_config
from tunewatch._config import DEFAULT_TRIGGERS

ROOT = Path(__file__).resolve().parents[2]


def test_documented_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # read from an empty directory: a `.tunewatch` store an earlier command made under the
    # repository's root would be refused as an earlier release's (test_config_data_dir.py)
    monkeypatch.chdir(tmp_path)
    config = load_config(ROOT / "configs" / "tunewatch.yaml", env={})
    assert config.models[0].name == "credit"
    assert config.store_url.startswith("sqlite:///")
    assert config.models[0].triggers == DEFAULT_TRIGGERS  # written out, `on:` unquoted


def test_misspelt_key_is_an_error_naming_its_path() -> None:
    with pytest.raises(ConfigError, match=r"server\.prot: Extra inputs are not permitted"):
        build_config({"server": {"prot": 8080}}, env={})


def test_error_names_path_rule_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"models": [{"name": "m", "task": "binry"}]}, env={})
    assert "models.0.task" in info.value.message
    assert "'binary', 'multiclass' or 'regression'" in info.value.message
    assert "'binry'" in info.value.message


def test_feature_range_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="`low` must be <= `high`"):
        build_config(
            {
                "models": [
                    {
                        "name": "m",
                        "task": "binary",
                        "features": [{"name": "a", "low": 2, "high": 1}],
                    }
                ]
            },
            env={},
        )


def test_environment_overrides_store_url_and_data_dir() -> None:
    config = build_config(
        {"store": {"url": "sqlite:///a.db"}},
        env={"TUNEWATCH_STORE_URL": "postgresql+psycopg://db/x", "TUNEWATCH_DATA_DIR": "/srv/tw"},
    )
    assert config.store_url == "postgresql+psycopg://db/x"
    assert config.data_dir == "/srv/tw"


def test_a_relative_data_dir_is_beside_the_config_file_wherever_it_is_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from another directory, the same config made and migrated an empty store
    there: `tunewatch --config /etc/tw/tunewatch.yaml models` listed nothing and
    `register` wrote where the daemon never reads."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "tw.yaml").write_text("data_dir: state\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(folder / "tw.yaml", env={}).data_dir == str(folder / "state")
    # the environment's is the operator's own, under the working directory as before
    env = {"TUNEWATCH_DATA_DIR": "mine"}
    assert load_config(folder / "tw.yaml", env=env).data_dir == str(tmp_path / "mine")
    assert build_config({"data_dir": "state"}, env={}).data_dir == str(tmp_path / "state")
    (folder / "bare.yaml").write_text("models: []\n")
    assert load_config(folder / "bare.yaml", env={}).data_dir == str(tmp_path / ".tunewatch")
    # absolute, so that the copy the daemon writes for its workers under the data
    # directory names the same one when read from there
    config = load_config(folder / "tw.yaml", env={})
    (folder / "state").mkdir()
    (folder / "state" / "worker.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert load_config(folder / "state" / "worker.yaml", env={}) == config


def test_newer_config_version_is_refused_with_reason() -> None:
    with pytest.raises(ConfigError, match="newer than this tunewatch understands"):
        build_config({"version": 2}, env={})


def test_config_is_frozen() -> None:
    config = build_config({}, env={})
    with pytest.raises(ValueError):
        config.server.port = 1  # type: ignore[misc]


def test_unreadable_and_non_mapping_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad, env={})


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"decay": {"min_windows": 2}}, r"min_windows: Input should be greater than or equal to 3"),
        # the documented minimum horizon with the default maturity left 2 matured windows
        # for a trend that needs 3: decay was insufficient_data forever
        (
            {"decay": {"horizon_windows": 3}},
            r"decay: .*`horizon_windows` \(3\) minus the windows still maturing "
            r"\(ceil\(`maturity_s` 86400.0 / `window_s` 86400.0\) = 1\) leaves 2 matured "
            r"windows, fewer than `min_windows` \(3\)",
        ),
        (
            {"decay": {"horizon_windows": 10, "window_s": 3600, "maturity_s": 28_000}},
            r"leaves 2 matured windows, fewer than `min_windows` \(3\)",
        ),
        (
            {"drift": {"min_rows": 500, "sample_size": 200}},
            r"`sample_size` \(200\) must be at least",
        ),
        (
            {"drift": {"columns": {"x0": {"method": "ks", "threshold": 1.5}}}},
            r"drift\.columns\.x0: .*method 'ks': `threshold` of a p-value test must be in "
            r"\(0, 1\), got 1\.5",
        ),
        (
            {"drift": {"columns": {"x0": {"method": "psi", "threshold": 0}}}},
            r"drift\.columns\.x0: .*method 'psi': `threshold` must be a positive finite number",
        ),
    ],
)
def test_evaluation_settings_the_monitors_would_refuse_are_config_errors(
    evaluation: dict[str, object], message: str
) -> None:
    """Accepted here, each of these made every scheduled evaluation of the model raise."""
    with pytest.raises(ConfigError, match=message):
        build_config(
            {"models": [{"name": "m", "task": "binary", "evaluation": evaluation}]}, env={}
        )


@pytest.mark.parametrize("store", ["x", ["url"], 3])
def test_a_store_that_is_not_a_mapping_is_a_config_error_with_the_url_override(
    store: object,
) -> None:
    """With TUNEWATCH_STORE_URL set, the override was merged into `store` by `dict()`,
    which raised a bare ValueError or TypeError (a traceback from the CLI)."""
    with pytest.raises(ConfigError, match="store: Input should be a valid dictionary"):
        build_config({"store": store}, env={"TUNEWATCH_STORE_URL": "sqlite:///x.db"})


@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("postgresql+psycopg://tw:s3cret-pw@db/tw", "'postgresql+psycopg://tw:***@db/tw'"),
        ("postgresql+psycopg://tw@db/tw?password=s3cret-pw", "password=***"),
        (["postgresql+psycopg://tw:s3cret-pw@db/tw"], "['postgresql+psycopg://tw:***@db/tw']"),
        (
            [{"url": "postgresql+psycopg://tw:s3cret-pw@db/tw"}],
            "[{'url': 'postgresql+psycopg://tw:***@db/tw'}]",
        ),
    ],
    ids=["url", "url-query-password", "list-of-url", "list-of-mapping"],
)
def test_a_store_url_written_where_the_mapping_belongs_is_quoted_without_its_password(
    store: object, shown: str
) -> None:
    """`store: <url>` (for `store: {url: <url>}`) printed the URL whole: only values at
    `store.url` and `tuning.storage_url` were redacted."""
    with pytest.raises(ConfigError, match="store: Input should be a valid dictionary") as info:
        build_config({"store": store}, env={})
    assert shown in info.value.message
    assert "s3cret-pw" not in info.value.message


def test_a_regression_model_s_default_objective_is_rmse_and_a_misfit_is_refused() -> None:
    """A configured regression model got `log_loss`, which every evaluation and retune of
    it then refused; a named objective that does not fit the task is now a load error."""
    config = build_config({"models": [{"name": "price", "task": "regression"}]}, env={})
    assert config.models[0].objective.name == "rmse"
    with pytest.raises(ConfigError, match="models.0: .*`objective`.*'log_loss' does not apply"):
        build_config(
            {
                "models": [
                    {"name": "price", "task": "regression", "objective": {"name": "log_loss"}}
                ]
            },
            env={},
        )
    with pytest.raises(ConfigError, match="models.0: .*`objective` must be one of"):
        build_config(
            {"models": [{"name": "m", "task": "binary", "objective": {"name": "lgo_loss"}}]},
            env={},
        )


def test_a_binary_model_s_cost_matrix_of_three_classes_is_a_config_error() -> None:
    """It loaded; every decay window then failed scoring and decay read
    insufficient_data for ever."""
    three = [[0, 1, 1], [5, 0, 1], [1, 1, 0]]
    objective = {"name": "cost", "params": {"cost_matrix": three}}
    with pytest.raises(
        ConfigError, match=r"models\.0: .*`objective`: `cost_matrix` of a binary model must be 2x2"
    ):
        build_config({"models": [{"name": "m", "task": "binary", "objective": objective}]}, env={})
    model = {"name": "m", "task": "multiclass", "objective": objective}
    assert build_config({"models": [model]}, env={}).models[0].objective.name == "cost"


def test_an_evaluation_window_in_seconds_alone_replaces_the_default_row_window() -> None:
    """`evaluation: {window_s: 3600}` was refused ("set exactly one of ...") for the
    default `window_rows` it never set, though the warning for a slowly renewed row
    window says to give the model a `window_s`."""

    def evaluation(settings: dict[str, object]) -> Any:
        raw = {"models": [{"name": "m", "task": "binary", "evaluation": settings}]}
        return build_config(raw, env={}).models[0].evaluation

    seconds = evaluation({"window_s": 3600})
    assert (seconds.window_rows, seconds.window_s) == (None, 3600.0)
    assert evaluation({}).window_rows == 5000
    assert evaluation({"window_rows": None, "window_s": 60}).window_s == 60.0
    for both in ({"window_rows": 5000, "window_s": 3600}, {"window_rows": None}):
        with pytest.raises(ConfigError, match="set exactly one of `window_rows` and `window_s`"):
            evaluation(both)


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (
            {"on": "decay_detected", "do": "rollback"},
            r"triggers\.0\.do: .*`do: rollback` is not carried out by a trigger.*"
            r"comparison\.rollback.*got 'rollback'",
        ),
        (
            {"on": "drift_detected", "do": "promote"},
            r"triggers\.0: .*`do: promote` needs `on: challenger_better`.*got on: drift_detected",
        ),
        (
            {"on": "challenger_better", "do": "promote", "cooldown_minutes": 600},
            r"triggers\.0: .*`cooldown_minutes` applies to `do: retune` only.*"
            r"got 600.0 with do: promote",
        ),
        (
            {"on": "srm_detected", "do": "notify", "cooldown_minutes": 5},
            r"triggers\.0: .*`cooldown_minutes` applies to `do: retune` only.*"
            r"got 5.0 with do: notify",
        ),
    ],
    ids=["rollback", "promote-on-drift", "promote-cooldown", "notify-cooldown"],
)
def test_a_trigger_nothing_would_carry_out_is_a_config_error(
    trigger: dict[str, object], message: str
) -> None:
    """The dispatcher recorded such actions as taken, but no code rolled back, promoted on
    another event than a won comparison, or held a promotion or notice for a cool-down."""
    with pytest.raises(ConfigError, match=message):
        build_config({"models": [{"name": "m", "task": "binary", "triggers": [trigger]}]}, env={})


def test_promote_and_notify_triggers_without_a_cooldown_load() -> None:
    config = build_config(
        {
            "models": [
                {
                    "name": "m",
                    "task": "binary",
                    "triggers": [
                        {"on": "challenger_better", "do": "promote"},
                        {"on": "drift_detected", "do": "notify", "cooldown_minutes": 0},
                        {"on": "alert_received", "do": "retune", "cooldown_minutes": 30},
                    ],
                }
            ]
        },
        env={},
    )
    assert [t.do for t in config.models[0].triggers] == ["promote", "notify", "retune"]
    # the workers read the effective configuration back: it must load as it was dumped
    # (a promote trigger's default cool-down was dumped as 60 and then refused)
    assert [t.cooldown_minutes for t in config.models[0].triggers] == [0.0, 0.0, 30.0]
    assert build_config(config.model_dump(mode="json"), env={}) == config


def test_two_triggers_for_one_event_are_a_config_error() -> None:
    """Both loaded and only the first applied: a `retune` listed after a `notify` for the
    same event never ran."""
    triggers = [
        {"on": "challenger_better", "do": "promote"},
        {"on": "drift_detected", "do": "notify"},
        {"on": "drift_detected", "do": "retune", "cooldown_minutes": 30},
    ]
    raw = {"models": [{"name": "m", "task": "binary", "triggers": triggers}]}
    with pytest.raises(
        ConfigError,
        match=r"models\.0\.triggers: .*`triggers\.1` and `triggers\.2` are both for "
        r"`on: drift_detected` \(do: notify and do: retune\)",
    ):
        build_config(raw, env={})


def test_a_model_name_follows_the_store_s_rule() -> None:
    """The config allowed only ^[A-Za-z0-9_.-]+$ while the store registers any printable
    name that is not a path, so a registered 'fraud model' could not be configured."""
    config = build_config({"models": [{"name": "fraud model", "task": "binary"}]}, env={})
    assert config.models[0].name == "fraud model"
    with pytest.raises(ConfigError, match=r"models\.0\.name: .*not a path.*got 'a/b'"):
        build_config({"models": [{"name": "a/b", "task": "binary"}]}, env={})


@pytest.mark.parametrize("name", ["fraud model", "crédit", "old/path"])
def test_a_registered_model_without_a_config_gets_the_defaults(name: str) -> None:
    """model_or_default raised a ValidationError for names the store holds (a name with a
    space, an accent, or a path registered before names could not be paths), which made
    the scheduler, evaluations and comparisons of every model fail."""
    config = build_config({}, env={})
    cfg = config.model_or_default(name, "regression")
    assert (cfg.name, cfg.task, cfg.objective.name) == (name, "regression", "rmse")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"low": 10, "high": 1}, "`low` must be <= `high`, got low=10.0, high=1.0"),
        ({"low": 1, "choices": [5]}, "either `choices` or `low`/`high`, not both"),
    ],
    ids=["reversed", "choices-and-range"],
)
def test_a_safe_range_that_cannot_mean_what_it_says_is_a_config_error(
    rule: dict[str, object], message: str
) -> None:
    """A reversed range held every value unsafe, and choices beside a range dropped the
    range without a word."""
    raw = {"models": [{"name": "m", "task": "binary", "safe_ranges": {"gb_max_depth": rule}}]}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(raw, env={})


def test_a_safe_range_on_a_name_the_pipeline_does_not_have_is_a_config_error() -> None:
    """A misspelt name (`learning_rate` for `gb_learning_rate`) loaded, and the guard it
    was meant to be was gone: no hyperparameter has that name, so none was checked."""
    raw = {
        "models": [{"name": "m", "task": "binary", "safe_ranges": {"learning_rate": {"high": 0.2}}}]
    }
    with pytest.raises(ConfigError) as info:
        build_config(raw, env={})
    message = info.value.message
    assert "models.0.safe_ranges.learning_rate: " in message
    assert "got 'learning_rate'" in message and "did you mean 'gb_learning_rate'" in message
    assert "'C', 'alpha', 'class_weight'" in message  # the names it may take
    raw["models"][0]["safe_ranges"] = {"gb_learning_rate": {"high": 0.2}}
    ranges = build_config(raw, env={}).models[0].safe_ranges
    assert ranges["gb_learning_rate"].high == 0.2


def test_a_boolean_is_not_a_safe_choice_of_one_and_zero() -> None:
    """``True == 1`` in Python: ``choices: [1]`` let ``True`` through as safe."""
    from tunewatch._approval_rules import unsafe_hyperparameters
    from tunewatch._config import SafeRange

    ints, flags = SafeRange(choices=(1, 0)), SafeRange(choices=(True,))
    assert unsafe_hyperparameters({"a": True}, {"a": ints}) == ["a=True not in ['0', '1']"]
    assert unsafe_hyperparameters({"a": 1}, {"a": flags}) == ["a=1 not in ['True']"]
    assert unsafe_hyperparameters({"a": 1.0, "b": True}, {"a": ints, "b": flags}) == []


def test_a_trigger_written_in_plain_yaml_loads(tmp_path: Path) -> None:
    # YAML 1.1 reads an unquoted `on` as the boolean true: the obvious way to write a
    # trigger was refused with "Keys should be strings, got True".
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        "models:\n"
        "  - name: credit\n"
        "    task: binary\n"
        "    regulated: true\n"
        "    triggers:\n"
        "      - on: drift_detected\n"
        "        do: retune\n"
        "      - on: challenger_better\n"
        "        do: notify\n"
    )
    model = load_config(path).models[0]
    assert model.regulated is True
    assert [(t.on, t.do) for t in model.triggers] == [
        ("drift_detected", "retune"),
        ("challenger_better", "notify"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "auth:\n  disabled: false\n  disabled: true\n",
            "auth.disabled: a key may be given once in a mapping, got it at lines 2 and 3",
        ),
        (
            "auth: {disabled: false, disabled: true}\n",
            "auth.disabled: a key may be given once in a mapping, got it at lines 1 and 1",
        ),
        (
            "models:\n  - {name: a, task: binary, regulated: true}\nmodels:\n  - {name: b}\n",
            "models: a key may be given once in a mapping, got it at lines 1 and 3",
        ),
        (
            "models:\n  - name: a\n    task: binary\n  - name: b\n    task: binary\n    name: c\n",
            "models.1.name: a key may be given once in a mapping, got it at lines 4 and 6",
        ),
    ],
    ids=["block", "flow", "top-level", "in-a-list"],
)
def test_a_key_given_twice_is_a_config_error_naming_its_path_and_lines(
    tmp_path: Path, text: str, message: str
) -> None:
    """The last one won silently: `auth: {disabled: false, disabled: true}` switched
    authentication off, a second `models:` dropped the first's regulated model."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.message == (
        f"{path}: not valid YAML: {message} (YAML readers keep one of them silently)"
    )


def test_a_merge_key_s_entries_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        "base: &base {name: x, task: binary, regulated: true}\n"
        "models:\n"
        "  - {<<: *base, name: a}\n"
        "  - {<<: *base, name: b, regulated: false}\n"
    )
    with pytest.raises(ConfigError, match=r"base: Extra inputs are not permitted"):
        load_config(path, env={})  # read past the merge keys: refused by the schema only


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("server: {port: 010}", 10),
        ("server: {port: 0010}", 10),
        ("server: {port: 09}", 9),
        ("server: {port: 0x200}", 512),
        ("server: {port: +80}", 80),
        ("server: {port: 8_080}", 8080),
        ("scoring: {refresh_s: 2.5}", 2.5),
        ("scoring: {refresh_s: 1.5e+1}", 15.0),
        ("scoring: {refresh_s: 1e1}", 10.0),
        ("scoring: {refresh_s: .5}", 0.5),
        ("scoring: {refresh_s: 7}", 7.0),
    ],
)
def test_numbers_are_read_as_yaml_1_2_reads_them(tmp_path: Path, text: str, read: float) -> None:
    """YAML 1.1 read `010` as octal 8 and `1:30` as 90 (base 60)."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(text + "\n")
    config = load_config(path, env={})
    assert read in (config.server.port, config.scoring.refresh_s)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: {port: '1:30'}", "server.port: Input should be a valid integer"),
        ("server: {port: 1:30}", "server.port: Input should be a valid integer"),
        ("scoring: {refresh_s: 1:30}", "scoring.refresh_s: Input should be a valid number"),
        ("server: {port: 0b11}", "server.port: Input should be a valid integer"),
        ("server: {port: true}", "server.port: Input should be a number, not a flag, got True"),
        (
            "scoring: {refresh_s: false}",
            "scoring.refresh_s: Input should be a number, not a flag, got False",
        ),
        ("version: true", "version: Input should be a number, not a flag, got True"),
        ("scoring: {refresh_s: .inf}", "scoring.refresh_s: Input should be a finite number"),
        ("scoring: {refresh_s: .nan}", "scoring.refresh_s: Input should be a finite number"),
        # an objective's parameters, a cost matrix's entries among them, took true as 1.0
        pytest.param(
            "models: [{name: m, task: binary, objective: "
            "{name: recall_at_precision, params: {min_precision: true}}}]",
            "models.0.objective.params.min_precision: Input should be a number, not a flag, "
            "got True",
            id="objective-param-flag",
        ),
        pytest.param(
            "models: [{name: m, task: binary, objective: {name: f_beta, params: {beta: false}}}]",
            "models.0.objective.params.beta: Input should be a number, not a flag, got False",
            id="objective-param-false",
        ),
        pytest.param(
            "models: [{name: m, task: binary, objective: "
            "{name: cost, params: {cost_matrix: [[0, true], [1, 0]]}}}]",
            "models.0.objective.params.cost_matrix.0.1: Input should be a number, not a flag, "
            "got True",
            id="cost-matrix-entry-flag",
        ),
    ],
)
def test_numbers_yaml_1_1_read_differently_and_flags_are_not_numbers(
    tmp_path: Path, text: str, message: str
) -> None:
    """`port: true` was port 1."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in info.value.message


def test_a_config_written_with_pyyaml_reads_back_the_same(tmp_path: Path) -> None:
    """The daemon writes its config out for its workers with PyYAML (YAML 1.1), which
    quotes only the text YAML 1.1 would read as something else: a text YAML 1.2 alone
    reads as a number came back a number."""
    names = ["1e3", "0o17", "09", "-.5", "1_0", "1:30", "on"]
    raw = {
        "models": [
            {
                "name": name,
                "task": "binary",
                "features": [{"name": name, "low": 1e-05, "high": 1e20}],
                "evaluation": {"decay": {"tolerance": 0.0001}},
            }
            for name in names
        ],
    }
    config = build_config(raw, env={})
    path = tmp_path / "worker-config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    assert load_config(path, env={}) == config


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "OFF"])
def test_a_safe_choice_written_as_a_yaml_1_1_flag_word_is_refused(
    tmp_path: Path, word: str
) -> None:
    # The config reads `yes` as text (YAML 1.2), a search space as a flag (YAML 1.1): a
    # tuned flag would never be a safe choice, and every promotion would wait silently.
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        "models:\n"
        "  - name: credit\n"
        "    task: binary\n"
        "    safe_ranges:\n"
        f"      early_stopping: {{choices: [{word}, true]}}\n"
    )
    with pytest.raises(ConfigError, match="write a flag as true or false"):
        load_config(path)


def test_drift_settings_accept_the_columns_the_drift_frame_has() -> None:
    """The check at registration knows the prediction and label columns by the names the
    drift frame gives them."""
    from tunewatch._config import LABEL_COLUMN, PREDICTION_COLUMN
    from tunewatch._drift_report import LABEL, PREDICTION

    assert (PREDICTION_COLUMN, LABEL_COLUMN) == (PREDICTION, LABEL)
    columns = {c: {"method": "psi"} for c in ("x0", PREDICTION, LABEL)}
    config = build_config(
        {
            "models": [
                {"name": "m", "task": "binary", "evaluation": {"drift": {"columns": columns}}}
            ]
        },
        env={},
    )
    config.check_registered_model("m", ["x0", "x1"], task="binary")
    config.check_registered_model("unconfigured", ["a"], task="regression")
    with pytest.raises(ConfigError, match=r"models\.0\.evaluation\.drift\.columns\.x0: .*'m'"):
        config.check_registered_model("m", ["a", "b"], task="binary")
    with pytest.raises(ConfigError, match=r"^models\.0\.task: .*got 'binary' .*'multiclass'"):
        config.check_registered_model("m", ["x0", "x1"], task="multiclass")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (None, r"cannot read search space '.*space\.yaml'"),
        (
            "name: s\nparams:\n  scalr: {type: categorical, choices: [none, standard]}\n",
            r"params\.scalr: 'scalr' is not a parameter of the pipeline",
        ),
        (
            "name: s\nparams:\n  scaler: {type: categorical, choices: [none, standrd]}\n",
            r"params\.scaler\.choices: `scaler` takes \['none', 'standard', 'robust'\]",
        ),
        (
            "name: s\nparams:\n  C: {type: float, low: 0.001, high: .inf}\n",
            r"params\.C: .*`high` must be a finite number, got inf",
        ),
    ],
    ids=["missing-file", "unknown-name", "unknown-choice", "infinite-bound"],
)
def test_a_search_space_that_does_not_load_is_a_config_error(
    tmp_path: Path, space: str | None, message: str
) -> None:
    """It was read only when a job ran: a missing file made every promotion wait ("search
    space unreadable"), a misspelt name or choice failed every trial that drew it."""
    path = tmp_path / "space.yaml"
    if space is not None:
        path.write_text(space)
    raw = {"models": [{"name": "m", "task": "binary", "tuning": {"search_space": str(path)}}]}
    with pytest.raises(ConfigError, match=r"models\.0\.tuning\.search_space: .*" + message):
        build_config(raw, env={})
    path.write_text((ROOT / "configs" / "search_spaces" / "demo.yaml").read_text())
    assert build_config(raw, env={}).models[0].tuning.search_space == str(path)


TEN_YEARS_S = 10 * 365.25 * 86_400
# (the key path, the model settings that put a value there, the longest value that loads:
# ten years in its unit, unless noted)
DURATIONS: list[tuple[str, Callable[[float], dict[str, object]], float]] = [
    (
        "triggers.0.cooldown_minutes",
        lambda v: {"triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": v}]},
        TEN_YEARS_S / 60,
    ),
    (
        "evaluation.drift.cooldown_minutes",
        lambda v: {"evaluation": {"drift": {"cooldown_minutes": v}}},
        TEN_YEARS_S / 60,
    ),
    (
        "evaluation.decay.cooldown_minutes",
        lambda v: {"evaluation": {"decay": {"cooldown_minutes": v}}},
        TEN_YEARS_S / 60,
    ),
    (
        "evaluation.estimate.cooldown_minutes",
        lambda v: {"evaluation": {"estimate": {"cooldown_minutes": v}}},
        TEN_YEARS_S / 60,
    ),
    ("tuning.schedule_hours", lambda v: {"tuning": {"schedule_hours": v}}, TEN_YEARS_S / 3600),
    ("evaluation.interval_s", lambda v: {"evaluation": {"interval_s": v}}, TEN_YEARS_S),
    (
        "evaluation.window_s",
        lambda v: {"evaluation": {"window_rows": None, "window_s": v}},
        TEN_YEARS_S,
    ),
    (
        "evaluation.label_delay_alarm_s",
        lambda v: {"evaluation": {"label_delay_alarm_s": v}},
        TEN_YEARS_S,
    ),
    # decay's horizon, `window_s` × `horizon_windows` (at least 3, and 3 more than the
    # windows still maturing), is at most ten years too: its window at most a third of
    # them, and its maturity at most the horizon less 3 matured windows
    (
        "evaluation.decay.window_s",
        lambda v: {"evaluation": {"decay": {"window_s": v, "maturity_s": 0, "horizon_windows": 3}}},
        TEN_YEARS_S / 3,
    ),
    (
        "evaluation.decay.maturity_s",
        lambda v: {"evaluation": {"decay": {"maturity_s": v, "window_s": TEN_YEARS_S / 30}}},
        TEN_YEARS_S * 27 / 30,
    ),
    (
        "evaluation.decay.horizon_days",
        lambda v: {"evaluation": {"decay": {"horizon_days": v}}},
        TEN_YEARS_S / 86_400,
    ),
]


@pytest.mark.parametrize("too_long", [float("inf"), 1.1e9], ids=["inf", "1.1e9"])
@pytest.mark.parametrize(
    ("path", "settings", "ten_years"), DURATIONS, ids=[d[0] for d in DURATIONS]
)
def test_a_duration_past_ten_years_is_a_config_error(
    path: str, settings: Callable[[float], dict[str, object]], ten_years: float, too_long: float
) -> None:
    """`.inf` loaded, and every evaluation then failed with an OverflowError (a cool-down
    becomes a timedelta); a 1.1e9-minute trigger cool-down failed every retune
    (`now - timedelta`); decay's `maturity_s: .inf` crashed the loader itself."""
    raw = {"models": [{"name": "m", "task": "binary", **settings(too_long)}]}
    with pytest.raises(ConfigError, match=rf"models\.0\.{re.escape(path)}: Input should be"):
        build_config(raw, env={})
    raw = {"models": [{"name": "m", "task": "binary", **settings(ten_years)}]}
    build_config(raw, env={})


def test_a_decay_horizon_past_ten_years_is_a_config_error() -> None:
    """Each key stayed within its own cap, but `window_s` × `horizon_windows` reached
    back past year 1: the config loaded, and every evaluation then failed with an
    OverflowError computing the horizon's start."""
    decay = {"window_s": 86_400, "horizon_windows": 800_000}
    raw = {"models": [{"name": "m", "task": "binary", "evaluation": {"decay": decay}}]}
    with pytest.raises(
        ConfigError,
        match=r"models\.0\.evaluation\.decay: .*the decay horizon `window_s` × "
        r"`horizon_windows` \(86400\.0 × 800000 = 69120000000\.0 s\) must be at most ten "
        r"years \(315576000\.0 s\)",
    ):
        build_config(raw, env={})
    ten_years = {"window_s": TEN_YEARS_S / 30, "horizon_windows": 30}
    raw = {"models": [{"name": "m", "task": "binary", "evaluation": {"decay": ten_years}}]}
    build_config(raw, env={})


def test_a_decay_horizon_of_a_huge_window_count_is_a_config_error_not_a_traceback() -> None:
    """Multiplied out, a 401-digit `horizon_windows` raised OverflowError out of the
    validator: a traceback, not a ConfigError. It is refused as a 64-bit integer is not,
    before the horizon is multiplied out; the largest one is past ten years."""
    decay = {"window_s": 86_400, "horizon_windows": 10**400}
    raw = {"models": [{"name": "m", "task": "binary", "evaluation": {"decay": decay}}]}
    with pytest.raises(
        ConfigError,
        match=r"models\.0\.evaluation\.decay\.horizon_windows: Input should be a 64-bit "
        r"integer, at most 9223372036854775807, got 1000000000…0000 \(401 digits\)",
    ):
        build_config(raw, env={})
    decay = {"window_s": 86_400, "horizon_windows": 2**63 - 1}
    raw = {"models": [{"name": "m", "task": "binary", "evaluation": {"decay": decay}}]}
    with pytest.raises(ConfigError, match=r"\(86400\.0 × 9223372036854775807 = 7\.9\d*e\+23 s\)"):
        build_config(raw, env={})


def test_an_infinite_parity_tolerance_is_a_config_error() -> None:
    """It loaded, and every export passed the parity gate, that of another model too."""
    tuning = {"parity_tolerance": float("inf")}
    raw = {"models": [{"name": "m", "task": "binary", "tuning": tuning}]}
    with pytest.raises(ConfigError, match=r"tuning\.parity_tolerance: Input should be a finite"):
        build_config(raw, env={})


def test_a_zero_parity_tolerance_is_a_config_error() -> None:
    """It loaded, and every job then failed after its whole study: a float32 export never
    matches float64 scikit-learn exactly (1.19e-07 apart on a logistic model)."""
    raw = {"models": [{"name": "m", "task": "binary", "tuning": {"parity_tolerance": 0}}]}
    with pytest.raises(
        ConfigError, match=r"tuning\.parity_tolerance: Input should be greater than 0"
    ):
        build_config(raw, env={})


@pytest.mark.parametrize("value", [1.0, 1.5])
def test_a_min_relative_improvement_the_budget_would_refuse_is_a_config_error(
    value: float,
) -> None:
    """It loaded, and every job of the model then failed when `retune.Budget` refused it."""
    tuning = {"min_relative_improvement": value}
    raw = {"models": [{"name": "m", "task": "binary", "tuning": tuning}]}
    with pytest.raises(ConfigError, match=r"tuning\.min_relative_improvement: .*less than 1"):
        build_config(raw, env={})


def test_every_budget_the_config_accepts_the_tuner_accepts() -> None:
    from retune import Budget

    tuning = {
        "max_trials": 1,
        "wall_time_s": 1e-9,
        "cpu_time_s": 1e-9,
        "patience": 1,
        "min_relative_improvement": 0.999,
        "pruner": "successive_halving",
    }
    config = build_config({"models": [{"name": "m", "task": "binary", "tuning": tuning}]}, env={})
    tj = config.models[0].tuning
    assert Budget(**{k: getattr(tj, k) for k in tuning}).min_relative_improvement == 0.999


def test_a_cv_gap_is_a_time_series_setting() -> None:
    time_series = {"cv": "time_series", "cv_gap": 50}
    config = build_config(
        {"models": [{"name": "m", "task": "binary", "tuning": time_series}]}, env={}
    )
    assert config.models[0].tuning.cv_gap == 50
    with pytest.raises(ConfigError, match=r"`cv_gap` \(50\) applies to `cv: time_series`"):
        build_config(
            {"models": [{"name": "m", "task": "binary", "tuning": {"cv_gap": 50}}]}, env={}
        )


SERVICE_DURATIONS = [
    ("scoring.refresh_s", {"scoring": {"refresh_s": "V"}}),
    ("scoring.candidate_timeout_s", {"scoring": {"candidate_timeout_s": "V"}}),
    ("auth.token_cache_ttl_s", {"auth": {"token_cache_ttl_s": "V"}}),
    ("scheduler.lease_ttl_s", {"scheduler": {"lease_ttl_s": "V"}}),
    ("tuning.heartbeat_s", {"tuning": {"heartbeat_s": "V"}}),
]


def _with(settings: dict[str, dict[str, str]], value: float) -> dict[str, object]:
    return {k: {kk: value for kk in v} for k, v in settings.items()}


@pytest.mark.parametrize("too_long", [float("inf"), float("nan"), 1e12], ids=["inf", "nan", "1e12"])
@pytest.mark.parametrize(
    ("path", "settings"), SERVICE_DURATIONS, ids=[d[0] for d in SERVICE_DURATIONS]
)
def test_a_service_duration_that_is_not_finite_or_past_ten_years_is_a_config_error(
    path: str, settings: dict[str, dict[str, str]], too_long: float
) -> None:
    """`scheduler.lease_ttl_s: .inf` (or 1e12) made `serve` exit with an OverflowError
    traceback; `scoring.refresh_s: .inf` killed the refresh thread, so lineups were never
    reloaded; NaN passed every `gt=` bound."""
    with pytest.raises(ConfigError, match=rf"\n  {re.escape(path)}: Input should be"):
        build_config(_with(settings, too_long), env={})
    build_config(_with(settings, 3600.0), env={})


def test_a_nan_anywhere_in_the_config_is_refused() -> None:
    raw = {
        "models": [
            {"name": "m", "task": "binary", "features": [{"name": "a", "low": float("nan")}]}
        ]
    }
    with pytest.raises(ConfigError, match=r"models\.0\.features\.0\.low: Input should be a finite"):
        build_config(raw, env={})


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """It escaped as a UnicodeDecodeError traceback."""
    path = tmp_path / "tunewatch.yaml"
    path.write_bytes(b"data_dir: caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"tunewatch\.yaml: not UTF-8 text \(byte 0xe9 at offset 13\)"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("task", "space", "wrong"),
    [
        ("regression", "binary_tabular.yaml", "'logistic'"),
        ("binary", "regression_tabular.yaml", "'ridge'"),
    ],
)
def test_a_search_space_of_the_other_task_is_a_config_error(
    task: str, space: str, wrong: str
) -> None:
    """A regression model pointed at the classifiers' space loaded, and every trial then
    failed (`Unknown label type: continuous`)."""
    path = ROOT / "configs" / "search_spaces" / space
    raw = {"models": [{"name": "m", "task": task, "tuning": {"search_space": str(path)}}]}
    with pytest.raises(
        ConfigError, match=rf"models\.0: .*`tuning\.search_space`.*{wrong}.*task {task!r}"
    ):
        build_config(raw, env={})


def test_a_relative_search_space_is_read_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was read from the working directory: the daemon found it, and a CLI command run
    from elsewhere (`tunewatch approve`, `tokens`) could not load the config at all."""
    (tmp_path / "etc" / "spaces").mkdir(parents=True)
    space = tmp_path / "etc" / "spaces" / "mine.yaml"
    space.write_text((ROOT / "configs" / "search_spaces" / "demo.yaml").read_text())
    config = tmp_path / "etc" / "tunewatch.yaml"
    models = [{"name": "m", "task": "binary", "tuning": {"search_space": "spaces/mine.yaml"}}]
    config.write_text(yaml.safe_dump({"models": models}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = load_config(config, env={})
    assert loaded.models[0].tuning.search_space == str(space)


COMPARISON_DURATIONS = [
    ("comparison.interval_s", {"interval_s": "V"}),
    ("comparison.label_maturity_s", {"label_maturity_s": "V"}),
    ("comparison.rollback.watch_s", {"rollback": {"watch_s": "V"}}),
    ("comparison.guardrails.max_latency_p99_s", {"guardrails": {"max_latency_p99_s": "V"}}),
]


def _put(settings: dict[str, Any], value: float) -> dict[str, Any]:
    return {k: _put(v, value) if isinstance(v, dict) else value for k, v in settings.items()}


@pytest.mark.parametrize("too_long", [float("inf"), float("nan"), 1e12], ids=["inf", "nan", "1e12"])
@pytest.mark.parametrize(
    ("path", "settings"), COMPARISON_DURATIONS, ids=[d[0] for d in COMPARISON_DURATIONS]
)
def test_a_comparison_duration_that_is_not_finite_or_past_ten_years_is_a_config_error(
    path: str, settings: dict[str, Any], too_long: float
) -> None:
    """`label_maturity_s: 1e12` failed every retune with an OverflowError (a timedelta),
    `interval_s: 1e12` made the scheduler's renewal raise and schedule no model at all."""
    model = {"name": "m", "task": "binary", "comparison": _put(settings, too_long)}
    with pytest.raises(ConfigError, match=rf"\n  models\.0\.{re.escape(path)}: Input should be"):
        build_config({"models": [model]}, env={})
    model = {"name": "m", "task": "binary", "comparison": _put(settings, 3600.0)}
    build_config({"models": [model]}, env={})


def test_a_relative_search_space_without_a_config_file_is_kept_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config built without a file (the demo, library users) kept the path relative to
    the working directory; the daemon writes it out for its workers, whose `load_config`
    read it beside that file, so every worker failed to load its config."""
    (tmp_path / "spaces").mkdir()
    space = tmp_path / "spaces" / "mine.yaml"
    space.write_text((ROOT / "configs" / "search_spaces" / "demo.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    models = [{"name": "m", "task": "binary", "tuning": {"search_space": "spaces/mine.yaml"}}]
    built = build_config({"models": models}, env={})
    assert built.models[0].tuning.search_space == str(space)
    written = tmp_path / "elsewhere" / "worker-config.yaml"
    written.parent.mkdir()
    written.write_text(yaml.safe_dump(built.model_dump(mode="json")))
    assert load_config(written, env={}).models[0].tuning.search_space == str(space)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"data_dir": "a\0b"},
            r"data_dir: Value error, a directory name must not hold a NUL character "
            r"\(\\x00\), as no file name can; got one at position \d+ of \d+ characters, "
            r"got '.*a\\x00b'",
        ),
        (
            {"store": {"url": "postgresql+psycopg://ops:secret@db/tune\0watch"}},
            r"store\.url: Value error, a database URL must not hold a NUL character \(\\x00, or "
            r"%00 in a URL\), as no file name can; got one at position 39 of 45 characters, "
            r"got 'postgresql\+psycopg://ops:\*\*\*@db/tune%00watch'",
        ),
        (
            {"store": {"url": "sqlite:///a\0b.db"}},  # made absolute: `a%00b.db`
            r"store\.url: Value error, a database URL must not hold a NUL character \(\\x00, or "
            r"%00 in a URL\), as no file name can; got one at position \d+ of \d+ characters, "
            r"got 'sqlite:////.*/a%00b\.db'",
        ),
        (
            {"tuning": {"storage_url": "sqlite:////data/a%00b.db"}},
            r"tuning\.storage_url: Value error, a database URL or journal file must not hold a "
            r"NUL character \(\\x00, or %00 in a URL\), as no file name can; got one at "
            r"position 17 of 24 characters",
        ),
        (
            {"tuning": {"storage_url": "/data/journal\0.log"}},
            r"tuning\.storage_url: Value error, a database URL or journal file must not hold a "
            r"NUL character \(\\x00, or %00 in a URL\), as no file name can; got one at "
            r"position 13 of 18 characters, got '/data/journal\\x00\.log'",
        ),
    ],
    ids=[
        "data-dir",
        "store-url-postgresql",
        "store-url-sqlite",
        "tuning-storage-url-percent-encoded",
        "tuning-journal-file",
    ],
)
def test_a_nul_character_in_a_path_setting_is_a_config_error(
    raw: dict[str, Any], message: str
) -> None:
    """No file name holds one: `data_dir`'s and `store.url`'s escaped from the store's
    opening as `ValueError: embedded null byte` tracebacks; the tuning storage's failed
    every job."""
    with pytest.raises(ConfigError, match=message) as info:
        build_config(raw, env={})
    assert "secret" not in info.value.message  # a URL's password is not shown


def test_a_config_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    """PyYAML recurses once per level: 5000 `[` escaped as a RecursionError traceback."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"tunewatch\.yaml: not readable YAML: nested deeper"):
        load_config(path, env={})


def test_the_store_lock_timeout_is_a_setting_of_30_s_by_default(tmp_path: Path) -> None:
    """How long a transaction waits for a lock (SQLite's busy_timeout, PostgreSQL's
    lock_timeout) was fixed at 30 s: the store took it, the config had no key for it."""
    assert build_config({}, env={}).store.lock_timeout_s == 30
    path = tmp_path / "tunewatch.yaml"
    path.write_text("store:\n  lock_timeout_s: 2.5\n")
    assert load_config(path, env={}).store.lock_timeout_s == 2.5


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "greater than or equal to 0.001, got 0"),
        (-1, "greater than or equal to 0.001, got -1"),
        ("x", "a valid number, unable to parse string as a number, got 'x'"),
        (float("inf"), "a finite number, got inf"),
        (True, "a number, not a flag, got True"),
        (601, "less than or equal to 600, got 601"),
    ],
    ids=["zero", "negative", "text", "inf", "flag", "past-ten-minutes"],
)
def test_a_store_lock_timeout_that_is_no_positive_finite_number_up_to_600_s_is_a_config_error(
    value: object, rule: str
) -> None:
    with pytest.raises(ConfigError, match=rf"\n  store\.lock_timeout_s: Input should be {rule}"):
        build_config({"store": {"lock_timeout_s": value}}, env={})


def test_tuning_workers_run_at_niceness_19_by_default() -> None:
    """Workers ran at the daemon's priority: on one host a retune slowed scoring badly."""
    assert build_config({}, env={}).tuning.worker_nice == 19
    assert build_config({"tuning": {"worker_nice": 0}}, env={}).tuning.worker_nice == 0


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (-1, "greater than or equal to 0, got -1"),
        (20, "less than or equal to 19, got 20"),
        (7.5, "a valid integer, got a number with a fractional part, got 7.5"),
        (True, "a number, not a flag, got True"),
    ],
    ids=["negative", "past-19", "fraction", "flag"],
)
def test_a_worker_niceness_outside_0_to_19_is_a_config_error(value: object, rule: str) -> None:
    """A negative niceness would raise a worker's priority, which needs privileges."""
    with pytest.raises(ConfigError, match=rf"\n  tuning\.worker_nice: Input should be {rule}"):
        build_config({"tuning": {"worker_nice": value}}, env={})


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        pytest.param("foo://x", "got backend 'foo'", id="unknown-backend"),
        pytest.param("mysql://ops:secret@db/optuna", "got backend 'mysql'", id="mysql"),
        pytest.param(
            "postgresql+asyncpg://ops:secret@db/optuna", "driver 'asyncpg'", id="other-driver"
        ),
        pytest.param("postgresql://db:port/optuna", "cannot parse", id="unparseable"),
    ],
)
def test_a_tuning_storage_url_no_worker_could_open_is_a_config_error(url: str, rule: str) -> None:
    """`tuning.storage_url: foo://x` loaded, and every retune failed when its worker opened
    the study; the store's URL was refused at once for the same value."""
    with pytest.raises(ConfigError, match=r"tuning\.storage_url") as info:
        build_config({"tuning": {"storage_url": url}}, env={})
    assert rule in info.value.message
    assert "secret" not in info.value.message  # a URL's password is not shown


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////data/optuna.db",
        "postgresql://ops@db/optuna",
        "postgresql+psycopg://ops@db:5433/optuna",
        "/data/studies.log",  # Optuna's journal file
    ],
)
def test_a_tuning_storage_a_worker_can_open_loads(url: str) -> None:
    assert build_config({"tuning": {"storage_url": url}}, env={}).tuning.storage_url == url
