"""Tabular data handling: reading with clear errors, type inference, schema overrides, exact round trips, metrics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from noisecraft.tabular.evaluate import evaluate
from noisecraft.tabular.io import as_frame, read_table, write_table
from noisecraft.tabular.report import plot_columns, save_report, summary_rows
from noisecraft.tabular.schema import TabularDataWarning, infer_schema
from noisecraft.tabular.transforms import CategoricalCodec, QuantileNormal, TableCodec


def mixed_table(num_rows: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(10, 0.5, num_rows), 2)
    income[::7] = np.nan
    return pd.DataFrame({
        "user_id": [f"u{i:05d}" for i in range(num_rows)],
        "age": rng.integers(18, 90, num_rows),
        "income": income,
        "rating": rng.integers(1, 6, num_rows),
        "city": rng.choice(["Oslo", "Lima", "Pune"], num_rows),
        "member": rng.random(num_rows) > 0.3,
        "joined": pd.Series(pd.date_range("2020-01-01", periods=num_rows, freq="D").strftime("%Y-%m-%d")),
        "nothing": np.full(num_rows, np.nan),
    })


# --- reading --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"a,b,c\n", "no data rows"),
    (b"a,b,c\n1,2,3\n4,5\n", "line 3 has 2 fields but the header has 3"),
    (b"a,b,c\n1,2,3\n4,5,6,7\n", "line 3 has 4 fields"),
    (b"a,b\n1,ok\n2,caf\xe9\n", "line 3 is not valid utf-8"),
    (b"a,a\n1,2\n", "duplicate column names"),
])
def test_bad_csv_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_table(path)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_table(tmp_path / "absent.csv")
    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported file type '.xlsx'"):
        read_table(tmp_path / "data.xlsx")


def test_latin1_file_reads_with_explicit_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"name,n\ncaf\xe9,1\nbar,2\n")
    assert read_table(path, encoding="latin-1")["name"].tolist() == ["café", "bar"]


def test_csv_and_parquet_round_trip(tmp_path):
    frame = mixed_table(20)
    for suffix in (".csv", ".parquet"):
        back = read_table(write_table(frame, tmp_path / f"t{suffix}"))
        assert back.shape == frame.shape and list(back.columns) == list(frame.columns)


@pytest.mark.parametrize("delimiter, suffix", [(";", ".csv"), ("\t", ".csv"), ("|", ".txt"), (",", ".tsv")])
def test_delimiter_is_detected_and_announced(tmp_path, delimiter, suffix):
    path = tmp_path / f"data{suffix}"
    name = "Smith, J" if delimiter != "," else "Smith J"  # a comma inside values of a non-comma file
    rows = [["name", "city", "n"], [name, "Oslo", "1"], ["Lee", "Lima", "2"], ["Lee", "Lima", "2"]]
    path.write_text("".join(delimiter.join(row) + "\n" for row in rows))
    with pytest.warns(TabularDataWarning, match="-separated \\(detected\\); pass --sep"):
        frame = read_table(path)
    assert list(frame.columns) == ["name", "city", "n"] and frame["n"].tolist() == [1, 2, 2]


def test_default_delimiter_reads_silently_and_sep_overrides_detection(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,x;y\n2,z;w\n")  # ';' inside values does not make the file ';'-separated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(path).shape == (2, 2)
        semicolons = tmp_path / "semi.csv"
        semicolons.write_text("a;b\n1;x\n2;y\n")
        assert as_frame(semicolons, sep=";").shape == (2, 2)
        assert read_table(tmp_path / "semi.csv", sep="semicolon")["b"].tolist() == ["x", "y"]


def test_one_column_table_hiding_a_delimiter_is_rejected(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;c\n" + "1;2;3\n" * 5)  # repeated rows: would otherwise fit as one categorical column
    with pytest.raises(ValueError, match="one column named 'a;b;c', which contains ';'; pass sep=';'"):
        read_table(path, sep=",")
    with pytest.raises(ValueError, match="--sep must be one character"):
        read_table(path, sep=";;")
    with pytest.raises(ValueError, match="unknown text encoding 'utf-9'"):
        read_table(path, encoding="utf-9")
    notes = tmp_path / "notes.csv"
    notes.write_text("notes; free text\nfine\nok\n")  # a one-column table after all: warned, still read
    with pytest.warns(TabularDataWarning, match="one column named 'notes; free text'"):
        assert read_table(notes)["notes; free text"].tolist() == ["fine", "ok"]
    with pytest.warns(TabularDataWarning, match="contains '\\|': it was probably read with the wrong delimiter"):
        as_frame(pd.DataFrame({"a|b": ["1|2"] * 5}))


# --- type inference and schema --------------------------------------------------------------------------------------


def test_inferred_kinds_and_warnings():
    with pytest.warns(TabularDataWarning) as record:
        schema = infer_schema(mixed_table())
    kinds = {column.name: column.kind for column in schema.columns}
    assert kinds == {"user_id": "id", "age": "integer", "income": "continuous", "rating": "categorical",
                     "city": "categorical", "member": "boolean", "joined": "datetime", "nothing": "empty"}
    assert schema["joined"].datetime_format == "%Y-%m-%d"
    messages = " ".join(str(warning.message) for warning in record)
    assert "'user_id' looks like an identifier" in messages and "'nothing' is entirely missing" in messages


def test_integer_keys_are_ids_only_by_name():
    frame = pd.DataFrame({"customer_id": np.arange(50) + 1000, "count": np.arange(50) * 3})
    with pytest.warns(TabularDataWarning, match="customer_id"):
        schema = infer_schema(frame)
    assert schema["customer_id"].kind == "id" and schema["count"].kind == "integer"


def test_stray_text_in_a_numeric_column_is_named_with_its_rows(tmp_path):
    frame = pd.DataFrame({"weight": [f"{60 + i * 0.5}" for i in range(30)], "city": ["Oslo", "Lima"] * 15})
    frame.loc[[4, 17], "weight"] = ["6O.5", "n/a?"]
    with pytest.warns(TabularDataWarning) as record:
        assert infer_schema(frame)["weight"].kind == "id"  # all values unique, so it would be dropped silently
    message = " ".join(str(warning.message) for warning in record)
    assert "column 'weight' is numeric except 2 text value(s): '6O.5' (row 4), 'n/a?' (row 17)" in message
    assert "Fix or blank these values" in message and "schema file" in message
    frame.to_csv(tmp_path / "weights.csv", index=False)
    with pytest.warns(TabularDataWarning, match=f"'weight' of {tmp_path / 'weights.csv'} .*'6O.5' \\(line 6\\)"):
        infer_schema(read_table(tmp_path / "weights.csv"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared text: no warning; genuine text and numbers: none either
        infer_schema(frame, overrides={"weight": {"kind": "categorical"}})
        infer_schema(pd.DataFrame({"size": ["S", "M", "L", "XL", "10"] * 4, "n": range(20)}))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_schema_file_overrides_inference(tmp_path, suffix):
    path = tmp_path / f"schema{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"columns": {"age": "categorical", "user_id": {"kind": "ignore"}}}))
    else:
        path.write_text("age: categorical\nuser_id:\n  kind: ignore\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TabularDataWarning)
        schema = infer_schema(mixed_table(), overrides=path)
    assert schema["age"].kind == "categorical" and schema["user_id"].kind == "ignore"


def test_schema_errors(tmp_path):
    with pytest.raises(ValueError, match="not in the data: \\['agee'\\]"):
        infer_schema(mixed_table(), overrides={"agee": {"kind": "integer"}})
    with pytest.raises(ValueError, match="unknown kind 'number'"):
        infer_schema(mixed_table(), overrides={"age": {"kind": "number"}})
    with pytest.raises(ValueError, match="no column can be modelled"):
        infer_schema(pd.DataFrame({"empty": [np.nan, np.nan]}))
    with pytest.raises(ValueError, match="row 1 holds 'abc', not a number"):
        frame = pd.DataFrame({"x": ["1.5", "abc", "2"]})
        TableCodec.fit(frame, infer_schema(frame, overrides={"x": {"kind": "continuous"}}))


# --- transforms -----------------------------------------------------------------------------------------------------


def test_quantile_normal_is_an_exact_monotone_round_trip_with_point_masses():
    rng = np.random.default_rng(1)
    values = np.concatenate([np.zeros(300), rng.exponential(2.0, 700)])  # 30% exact zeros, like "affairs"
    transform = QuantileNormal.fit(values)
    scores = transform.forward(values)
    assert abs(scores[values > 0].mean()) < 1.5 and np.all(np.isfinite(scores))
    assert np.allclose(transform.inverse(scores), values, atol=1e-3)  # only the clipped extreme ranks move
    grid = np.linspace(-6, 6, 101)
    decoded = transform.inverse(grid)
    assert np.all(np.diff(decoded) >= 0) and decoded[0] == values.min()
    assert values.max() - 1e-3 < decoded[-1] <= values.max()  # never beyond the data's range
    # The share of normal mass mapped onto the point mass equals its frequency.
    assert abs((transform.inverse(rng.standard_normal(20000)) == 0).mean() - 0.3) < 0.02


def test_codec_round_trip_restores_values_dtypes_and_labels():
    frame = mixed_table()
    frame["level"] = pd.Categorical(np.where(frame["age"] > 50, "senior", "junior"), categories=["junior", "senior"])
    frame["stamp"] = pd.to_datetime("2021-03-01") + pd.to_timedelta(frame["age"] * 3600, unit="s")
    frame["maybe"] = pd.Series([True, False, None] * 40, dtype=object)
    frame["count"] = pd.array([1, None] + list(range(118)), dtype="Int64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TabularDataWarning)
        schema = infer_schema(frame)
    codec = TableCodec.from_dict(json.loads(json.dumps(TableCodec.fit(frame, schema).to_dict())))
    x_num, x_cat = codec.encode(frame)
    assert x_num.dtype == np.float32 and x_cat.dtype == np.int64
    back = codec.decode(x_num, x_cat, rng=np.random.default_rng(0))
    assert list(back.columns) == list(frame.columns)
    assert back.dtypes.astype(str).tolist() == frame.dtypes.astype(str).tolist()
    for name in frame.columns.drop(["user_id", "nothing"]):
        pd.testing.assert_series_equal(back[name], frame[name], check_names=False)
    assert back["nothing"].isna().all() and back["user_id"].is_unique
    assert not set(back["user_id"]) & set(frame["user_id"])  # fresh keys, never copies


def test_decoding_clips_to_bounds_and_rounds_integers():
    frame = pd.DataFrame({"age": np.arange(20, 80), "score": np.linspace(0.5, 9.5, 60).round(1)})
    codec = TableCodec.fit(frame, infer_schema(frame))
    extreme = np.array([[-9.0, 9.0], [9.0, -9.0], [0.1, 0.3]], dtype=np.float32)
    back = codec.decode(extreme, np.zeros((3, 0), dtype=np.int64), rng=np.random.default_rng(0))
    assert back["age"].tolist()[:2] == [20, 79] and back["score"].tolist()[:2] == [9.5, 0.5]
    assert back["age"].dtype == np.int64 and back["score"].round(1).equals(back["score"])


def test_many_level_category_is_pooled_with_a_warning_and_decodes_to_real_labels():
    labels = pd.Series([f"zip{i % 300}" for i in range(900)] + ["common"] * 900, name="zip")
    with pytest.warns(TabularDataWarning, match="column 'zip' has 301 levels"):
        codec = CategoricalCodec.fit(labels, max_categories=50)
    assert codec.num_tokens == 50 and codec.levels[0] == "common"
    tokens = codec.encode(labels)
    decoded = codec.decode(tokens, np.random.default_rng(0))
    assert set(decoded) <= set(labels) and (decoded == "common").sum() == 900
    assert len(set(decoded)) > 200  # the pooled token spreads over the rare labels


def test_conditions_map_values_and_reject_unknowns():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TabularDataWarning)
        frame = mixed_table()
        codec = TableCodec.fit(frame, infer_schema(frame))
    (part, index, token), = codec.condition("rating", "3")  # text "3" matches the integer level 3
    assert part == "cat" and codec.categorical[index].levels[token] == 3
    (_, member_index, member_token), = codec.condition("member", "true")
    assert codec.categorical[member_index].levels[member_token] is True
    income = codec.condition("income", "25000")
    assert [entry[0] for entry in income] == ["num", "cat"]  # value + "present" token (income has missing values)
    with pytest.raises(ValueError, match="unknown column 'incme'"):
        codec.condition("incme", 1)
    with pytest.raises(ValueError, match="column 'city' has no value 'Rome'"):
        codec.condition("city", "Rome")
    with pytest.raises(ValueError, match="outside the training range"):
        codec.condition("age", 500)
    with pytest.raises(ValueError, match="is id and not modelled"):
        codec.condition("user_id", "u00001")


# --- evaluation -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split():
    frame = mixed_table(300, seed=3).drop(columns=["user_id", "nothing"])
    frame["label"] = (frame["age"] + 20 * frame["member"] > 60).map({True: "yes", False: "no"})
    return frame.iloc[:200].reset_index(drop=True), frame.iloc[200:].reset_index(drop=True)


def test_copied_rows_are_flagged_and_noise_is_detected(split, tmp_path):
    train, holdout = split
    copy_report = evaluate(train, train.sample(100, random_state=0), holdout=holdout, target="label",
                           reference=False)
    privacy = copy_report["privacy"]
    # Half the copies fall outside the train subsample matched to the holdout size; the rest sit at distance 0.
    assert privacy["exact_copies"] == 100 and privacy["closer_to_train_share"] > 0.75
    assert copy_report["fidelity"]["column_shapes_error"] < 0.15
    ml = copy_report["ml_efficiency"]
    assert ml["task"] == "binary" and set(ml["models"]) == {"gradient_boosting", "random_forest", "linear"}
    assert ml["trtr"] > 0.9
    rng = np.random.default_rng(0)
    noise = train.copy()
    for name in noise.columns:  # every column shuffled independently: marginals kept, dependencies destroyed
        noise[name] = rng.permutation(noise[name].to_numpy())
    noise["age"] = noise["age"] * 2
    noise_report = evaluate(train, noise, holdout=holdout, target="label", reference=False)
    assert noise_report["detection"]["auc"] > 0.8
    assert noise_report["ml_efficiency"]["tstr"] < ml["tstr"] - 0.2
    assert noise_report["fidelity"]["column_pair_trends_error"] > copy_report["fidelity"]["column_pair_trends_error"]
    saved = json.loads(save_report(noise_report, tmp_path / "report.json").read_text())
    assert saved["detection"]["auc"] == pytest.approx(noise_report["detection"]["auc"])
    assert any(row[0].startswith("TSTR") for row in summary_rows(noise_report))
    png = plot_columns(train, noise, infer_schema(train), tmp_path / "columns.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_evaluation_without_holdout_skips_what_needs_it(split):
    train, _ = split
    report = evaluate(train, train.iloc[::-1], reference=False)
    assert "skipped" in report["ml_efficiency"] and "closer_to_train_share" not in report["privacy"]
    with pytest.raises(ValueError, match="lacks columns of the real table: \\['label'\\]"):
        evaluate(train, train.drop(columns=["label"]))
